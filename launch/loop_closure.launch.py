"""Loop closure alone, reading the keyframes of a running vo_node:
``ros2 launch mp_slam_ros loop_closure.launch.py [keyframes_topic:=/robot/keyframes] ...``.

Arguments: ``ros2 launch mp_slam_ros loop_closure.launch.py --show-args`` (see mp_slam_ros/ros/launch_support.py).
"""

from mp_slam_ros.ros.launch_support import launch_description


def generate_launch_description():
    """loop_closure_node with the preset of ``mode`` (or ``params_file``), optional rviz2."""
    return launch_description(["loop_closure_node"], __file__)
