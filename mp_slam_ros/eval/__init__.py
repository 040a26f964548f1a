"""Trajectory evaluation with evo (ATE with SE(3) alignment, RPE), statistics and plots (ROS-free)."""
