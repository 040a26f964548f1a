"""Visual odometry alone: ``ros2 launch mp_slam_ros vo.launch.py [mode:=stereo] [use_sim_time:=true] ...``.

Arguments: ``ros2 launch mp_slam_ros vo.launch.py --show-args`` (see mp_slam_ros/ros/launch_support.py).
"""

from mp_slam_ros.ros.launch_support import launch_description


def generate_launch_description():
    """vo_node with the preset of ``mode`` (or ``params_file``), optional rviz2."""
    return launch_description(["vo_node"], __file__)
