"""mp_slam_ros: mixed-precision visual SLAM for household robots.

The core (everything outside ``ros/`` and ``nodes/``) is ROS-free and imports no rclpy.
"""

__version__ = "0.1.0"
