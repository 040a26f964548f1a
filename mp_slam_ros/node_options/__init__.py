"""Options of the two ROS nodes themselves (topics, frames, QoS, TF), next to their pipelines'.

ROS-free dataclasses, so that a parameter file (a preset) is validated the same way by the nodes,
the launch files and the offline CLIs (:mod:`mp_slam_ros.presets`).
"""
