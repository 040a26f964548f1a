"""Standard ROS 2 messages of a sequence, built as ``rosbags`` typestore objects (no rclpy).

Image (rgb8 / 16UC1 / 32FC1), CameraInfo (plumb_bob, zero distortion, stereo ``P[0, 3] = -fx B``),
nav_msgs/Odometry (2D diff-drive covariances) and tf2_msgs/TFMessage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from mp_slam_ros.io.bags import TYPESTORE
from mp_slam_ros.geometry.camera import PinholeCamera

_T = TYPESTORE.types
_ENCODINGS = {(np.dtype(np.uint8), 3): "rgb8", (np.dtype(np.uint8), 1): "mono8", (np.dtype(np.uint16), 1): "16UC1", (np.dtype(np.float32), 1): "32FC1"}
#: pose covariance of wheel odometry (x, y, z, roll, pitch, yaw); z/roll/pitch unobserved
_ODOM_POSE_COV = np.diag([0.01, 0.01, 1e6, 1e6, 1e6, 0.03]).reshape(-1)
_ODOM_TWIST_COV = np.diag([0.001, 1e6, 1e6, 1e6, 1e6, 0.005]).reshape(-1)


def header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header."""
    return _T["std_msgs/msg/Header"](
        stamp=_T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
        frame_id=frame_id,
    )


def image_msg(pixels: NDArray[np.generic], stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an ``(H, W, 3) uint8`` (rgb8) or ``(H, W)`` uint8/uint16/float32 array."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    encoding = _ENCODINGS[(pixels.dtype, channels)]
    data = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<"), copy=False)
    return _T["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id),
        height=pixels.shape[0],
        width=pixels.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=pixels.shape[1] * channels * pixels.dtype.itemsize,
        data=data.view(np.uint8).reshape(-1),
    )


def camera_info_msg(camera: PinholeCamera, stamp_ns: int, frame_id: str, baseline_m: float = 0.0) -> Any:
    """sensor_msgs/CameraInfo of an undistorted camera; ``baseline_m`` > 0 for a right stereo camera."""
    K = camera.K
    P = np.hstack([K, np.zeros((3, 1))])
    P[0, 3] = -camera.fx * baseline_m
    return _T["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id),
        height=camera.height,
        width=camera.width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=K.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=_T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def _vector3(x: float, y: float, z: float) -> Any:
    return _T["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))


def _quaternion(R: NDArray[np.float64]) -> Any:
    qx, qy, qz, qw = Rotation.from_matrix(R).as_quat()
    return _T["geometry_msgs/msg/Quaternion"](x=float(qx), y=float(qy), z=float(qz), w=float(qw))


def transform_stamped(T_parent_child: NDArray[np.float64], stamp_ns: int, parent: str, child: str) -> Any:
    """geometry_msgs/TransformStamped of a 4x4 pose ``T_parent_child``."""
    return _T["geometry_msgs/msg/TransformStamped"](
        header=header(stamp_ns, parent),
        child_frame_id=child,
        transform=_T["geometry_msgs/msg/Transform"](
            translation=_vector3(*T_parent_child[:3, 3]), rotation=_quaternion(T_parent_child[:3, :3])
        ),
    )


def tf_msg(transforms: list[Any]) -> Any:
    """tf2_msgs/TFMessage."""
    return _T["tf2_msgs/msg/TFMessage"](transforms=transforms)


def odometry_msg(stamp_ns: int, x: float, y: float, yaw: float, v: float, omega: float, frame: str, child: str) -> Any:
    """nav_msgs/Odometry of a planar pose in ``frame`` and a twist in ``child``."""
    R = Rotation.from_euler("z", yaw).as_matrix()
    pose = _T["geometry_msgs/msg/Pose"](position=_T["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=0.0), orientation=_quaternion(R))
    twist = _T["geometry_msgs/msg/Twist"](linear=_vector3(v, 0.0, 0.0), angular=_vector3(0.0, 0.0, omega))
    return _T["nav_msgs/msg/Odometry"](
        header=header(stamp_ns, frame),
        child_frame_id=child,
        pose=_T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=_ODOM_POSE_COV.copy()),
        twist=_T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=_ODOM_TWIST_COV.copy()),
    )
