"""Both nodes: ``ros2 launch mp_slam_ros slam.launch.py [mode:=stereo] [precision:=mixed] [use_sim_time:=true] [rviz:=true]``.

Arguments: ``ros2 launch mp_slam_ros slam.launch.py --show-args`` (see mp_slam_ros/ros/launch_support.py).
"""

from mp_slam_ros.ros.launch_support import launch_description


def generate_launch_description():
    """vo_node and loop_closure_node with one preset (``params_file``), optional rviz2."""
    return launch_description(["vo_node", "loop_closure_node"], __file__)
