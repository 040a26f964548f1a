"""``sensor_msgs/Image`` <-> numpy arrays (cv_bridge is not on PyPI), validated.

Colour images (``rgb8``, ``bgr8``, ``mono8``) become ``(H, W, 3)`` / ``(H, W)`` uint8 arrays and
their channel order; depth images (``16UC1`` millimetres, ``32FC1`` metres) become ``(H, W)``
float32 metres. Row padding (``step`` larger than a row) and big-endian data are handled.

Every problem raises an :class:`ImageError` subclass naming the topic, the field and the value;
its ``problem`` is a short key a node counts dropped frames under.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from sensor_msgs.msg import Image

from mp_slam_ros.errors import MessageError
from mp_slam_ros.ros.conversions import CameraModel, stamp_from_ns

#: encoding -> (dtype, channels, channel order of the array we return)
COLOUR_ENCODINGS: dict[str, tuple[np.dtype, int, str]] = {
    "rgb8": (np.dtype(np.uint8), 3, "rgb"),
    "bgr8": (np.dtype(np.uint8), 3, "bgr"),
    "mono8": (np.dtype(np.uint8), 1, "mono"),
}
#: encoding -> (dtype, metres per unit)
DEPTH_ENCODINGS: dict[str, tuple[np.dtype, float]] = {
    "16UC1": (np.dtype(np.uint16), 1e-3),
    "32FC1": (np.dtype(np.float32), 1.0),
}
_ALL_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    **{name: (dtype, channels) for name, (dtype, channels, _) in COLOUR_ENCODINGS.items()},
    **{name: (dtype, 1) for name, (dtype, _) in DEPTH_ENCODINGS.items()},
}


class ImageError(MessageError):
    """An image that cannot be used; ``problem`` is the key it is counted under."""

    problem: ClassVar[str] = "image"


class UnsupportedEncodingError(ImageError):
    """The encoding is not one this topic accepts."""

    problem = "unsupported_encoding"


class ImageLayoutError(ImageError):
    """``step``, ``width``, ``height`` and the data length do not agree."""

    problem = "bad_layout"


class ImageSizeMismatchError(ImageError):
    """The image size differs from the camera model's (CameraInfo) or from the other image's."""

    problem = "size_mismatch"


class InvalidDepthError(ImageError):
    """A depth image without a single valid (finite, positive) value."""

    problem = "invalid_depth"


def _pixels(msg: Image, topic: str, accepted: tuple[str, ...]) -> NDArray:
    """The ``(H, W)`` or ``(H, W, C)`` array of ``msg`` (a copy, native byte order)."""
    if msg.encoding not in accepted:
        raise UnsupportedEncodingError(
            f"{topic}: encoding {msg.encoding!r} is not supported (expected one of {', '.join(accepted)})"
        )
    dtype, channels = _ALL_ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height == 0 or width == 0:
        raise ImageLayoutError(f"{topic}: empty image {width}x{height}")
    if step < row_bytes:
        raise ImageLayoutError(f"{topic}: step {step} is shorter than a row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageLayoutError(f"{topic}: data has {data.size} bytes, expected step x height = {step} x {height} = {step * height}")
    rows = data.reshape(height, step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    pixels = np.ascontiguousarray(rows).view(dtype.newbyteorder(order)).astype(dtype, copy=True)
    return pixels.reshape((height, width) if channels == 1 else (height, width, channels))


def colour_from_msg(msg: Image, topic: str) -> tuple[NDArray[np.uint8], str]:
    """``(image, order)``: ``(H, W, 3)`` uint8 with ``order`` "rgb"/"bgr", or ``(H, W)`` with "mono"."""
    pixels = _pixels(msg, topic, tuple(COLOUR_ENCODINGS))
    return pixels, COLOUR_ENCODINGS[msg.encoding][2]


def depth_m_from_msg(msg: Image, topic: str) -> NDArray[np.float32]:
    """``(H, W)`` float32 depth in metres, NaN where there is none (0, negative, NaN or infinite in
    the message); InvalidDepthError if no pixel has depth."""
    pixels = _pixels(msg, topic, tuple(DEPTH_ENCODINGS))
    depth_m = pixels.astype(np.float32) * np.float32(DEPTH_ENCODINGS[msg.encoding][1])
    valid = np.isfinite(depth_m) & (depth_m > 0.0)
    if not np.any(valid):
        raise InvalidDepthError(f"{topic}: no valid depth (every pixel is 0, negative or NaN)")
    depth_m[~valid] = np.nan
    return depth_m


def check_image_size(image: NDArray, camera: CameraModel, topic: str) -> None:
    """Raise :class:`ImageSizeMismatchError` unless ``image`` is ``camera.height x camera.width``."""
    height, width = image.shape[:2]
    if (width, height) != (camera.width, camera.height):
        raise ImageSizeMismatchError(
            f"{topic}: image is {width}x{height} but camera_info says {camera.width}x{camera.height}"
        )


def image_to_msg(pixels: NDArray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    """``sensor_msgs/Image`` of ``pixels`` (``(H, W)`` or ``(H, W, C)``) in ``encoding``, little-endian."""
    if encoding not in _ALL_ENCODINGS:
        raise UnsupportedEncodingError(f"image_to_msg: encoding {encoding!r} is not supported")
    dtype, channels = _ALL_ENCODINGS[encoding]
    shape_channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if shape_channels != channels:
        raise ImageLayoutError(f"image_to_msg: {encoding} has {channels} channel(s), array shape {pixels.shape}")
    data = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<"))
    msg = Image()
    msg.header.stamp = stamp_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = data.view(np.uint8).reshape(-1).tobytes()
    return msg
