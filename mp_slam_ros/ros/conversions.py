"""Conversions between standard ROS messages and numpy arrays (no ``rclpy.init`` needed).

Poses are ``pose7 = [x, y, z, qx, qy, qz, qw]`` float64 rows (the layout of the messages, so
message -> arrays -> message round-trips are exact) or ``(4, 4)`` matrices through
:mod:`mp_slam_ros.geometry.lie`. Flat ``T[]`` message fields are ``array.array``; :func:`to_sequence`
and :func:`from_sequence` move them to and from shaped numpy arrays without per-element Python work.

Every ``*_from_msg`` validates what it reads and raises :class:`MessageError` naming the field and
the offending value, so a node can log it and drop the message.
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, TransformStamped
from numpy.typing import NDArray
from sensor_msgs.msg import CameraInfo

from mp_slam_ros.errors import MessageError
from mp_slam_ros.geometry.lie import se3_from_translation_quat, se3_to_translation_quat
from mp_slam_ros.types import CameraModel

__all__ = [
    "CameraModel", "camera_info_from_msg", "camera_info_to_msg", "check_pose7", "from_sequence", "ns_from_stamp",
    "pose_from_msg", "pose_to_msg", "stamp_from_ns", "to_sequence", "transform_from_msg", "transform_to_msg",
]

NS_PER_S = 1_000_000_000
#: Tolerance on | |q| - 1 | for quaternions read from messages.
QUAT_NORM_TOL = 1e-6

# array.array type codes of the ROS sequence types used here.
_TYPECODES = {
    np.dtype(np.float32): "f",
    np.dtype(np.float64): "d",
    np.dtype(np.uint8): "B",
    np.dtype(np.uint64): "Q",
}


def stamp_from_ns(stamp_ns: int) -> Time:
    """``builtin_interfaces/Time`` of a non-negative time in nanoseconds."""
    if stamp_ns < 0:
        raise MessageError(f"header.stamp: negative time {stamp_ns} ns")
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def ns_from_stamp(stamp: Time) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def to_sequence(values: NDArray, dtype: type[np.generic]) -> array.array:
    """A flat ``array.array`` (what rosidl stores for ``T[]`` fields) of ``values`` as ``dtype``.

    Assigning an ``array.array`` of the right type code skips the per-element checks that the
    generated setters run on other sequences, so large payloads convert in microseconds.
    """
    flat = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
    out = array.array(_TYPECODES[np.dtype(dtype)])
    out.frombytes(flat.tobytes())
    return out


def from_sequence(values: array.array | NDArray, dtype: type[np.generic], field: str,
                  row_size: int = 1, rows: int | None = None) -> NDArray:
    """Copy a flat message sequence into an ``(rows, row_size)`` array (1-D when row_size is 1).

    Raises :class:`MessageError` naming ``field`` when the length does not fit.
    """
    flat = np.frombuffer(values, dtype=dtype) if isinstance(values, array.array) else np.asarray(values, dtype)
    if flat.size % row_size or (rows is not None and flat.size != rows * row_size):
        expected = f"{rows} x {row_size}" if rows is not None else f"a multiple of {row_size}"
        raise MessageError(f"{field}: length {flat.size}, expected {expected}")
    shape = (-1,) if row_size == 1 else (-1, row_size)
    return flat.reshape(shape).copy()


def check_pose7(pose7: NDArray[np.float64], field: str) -> None:
    """Raise :class:`MessageError` unless every row is finite with a unit quaternion."""
    if not np.all(np.isfinite(pose7)):
        bad = int(np.argwhere(~np.isfinite(pose7))[0][0])
        raise MessageError(f"{field}[{bad}]: non-finite pose {pose7[bad].tolist()}")
    norms = np.linalg.norm(pose7[:, 3:7], axis=1)
    off = np.abs(norms - 1.0) > QUAT_NORM_TOL
    if np.any(off):
        bad = int(np.argmax(off))
        raise MessageError(f"{field}[{bad}]: quaternion norm {norms[bad]!r} is not 1")


def pose_to_msg(pose7: NDArray[np.float64]) -> Pose:
    """``geometry_msgs/Pose`` of a pose7 ``(7,)``."""
    x, y, z, qx, qy, qz, qw = (float(v) for v in np.asarray(pose7, dtype=np.float64).reshape(7))
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = x, y, z
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    return pose


def pose_from_msg(pose: Pose, field: str = "pose") -> NDArray[np.float64]:
    """Pose7 ``(7,)`` of a ``geometry_msgs/Pose`` (validated)."""
    p, q = pose.position, pose.orientation
    pose7 = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], dtype=np.float64)
    check_pose7(pose7[None], field)
    return pose7


def transform_to_msg(T_parent_child: NDArray[np.float64], parent_frame: str, child_frame: str,
                     stamp_ns: int) -> TransformStamped:
    """``geometry_msgs/TransformStamped`` of a rigid transform ``(4, 4)`` (child in parent)."""
    translation, quat_xyzw = se3_to_translation_quat(T_parent_child)
    msg = TransformStamped()
    msg.header.stamp = stamp_from_ns(stamp_ns)
    msg.header.frame_id = parent_frame
    msg.child_frame_id = child_frame
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in translation[0])
    q.x, q.y, q.z, q.w = (float(v) for v in quat_xyzw[0])
    return msg


def transform_from_msg(msg: TransformStamped) -> NDArray[np.float64]:
    """Rigid transform ``(4, 4)`` T_parent_child of a ``geometry_msgs/TransformStamped``."""
    t, q = msg.transform.translation, msg.transform.rotation
    pose7 = np.array([[t.x, t.y, t.z, q.x, q.y, q.z, q.w]], dtype=np.float64)
    check_pose7(pose7, f"transform {msg.header.frame_id!r} -> {msg.child_frame_id!r}")
    return se3_from_translation_quat(pose7[:, :3], pose7[:, 3:])[0]

def camera_info_to_msg(camera: CameraModel, stamp_ns: int) -> CameraInfo:
    """``sensor_msgs/CameraInfo`` of a camera model."""
    msg = CameraInfo()
    msg.header.stamp = stamp_from_ns(stamp_ns)
    msg.header.frame_id = camera.frame_id
    msg.width, msg.height = int(camera.width), int(camera.height)
    msg.distortion_model = camera.distortion_model
    msg.d = to_sequence(camera.distortion_coeffs, np.float64)
    msg.k = np.asarray(camera.camera_matrix, dtype=np.float64).reshape(9)
    msg.r = np.asarray(camera.rectification, dtype=np.float64).reshape(9)
    msg.p = np.asarray(camera.projection_matrix, dtype=np.float64).reshape(12)
    return msg


def camera_info_from_msg(msg: CameraInfo, field: str = "camera_info") -> CameraModel:
    """Camera model of a ``sensor_msgs/CameraInfo``; binned or ROI images are rejected."""
    if msg.binning_x > 1 or msg.binning_y > 1:
        raise MessageError(f"{field}.binning: {msg.binning_x}x{msg.binning_y} binning is not supported")
    if msg.roi.width or msg.roi.height:
        raise MessageError(f"{field}.roi: a region of interest is not supported ({msg.roi.width}x{msg.roi.height})")
    k = np.array(msg.k, dtype=np.float64).reshape(3, 3)
    if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
        raise MessageError(f"{field}.k: not a valid camera matrix {k.reshape(-1).tolist()}")
    projection = np.array(msg.p, dtype=np.float64).reshape(3, 4)
    return CameraModel(
        frame_id=msg.header.frame_id,
        width=int(msg.width),
        height=int(msg.height),
        camera_matrix=k,
        distortion_model=msg.distortion_model,
        distortion_coeffs=from_sequence(msg.d, np.float64, f"{field}.d"),
        rectification=np.array(msg.r, dtype=np.float64).reshape(3, 3),
        projection_matrix=projection,
        baseline_m=float(-projection[0, 3] / projection[0, 0]) if projection[0, 0] > 0.0 else 0.0,
    )
