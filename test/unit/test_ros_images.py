"""Image <-> ndarray conversions (no rclpy.init): encodings, padding, endianness, typed errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs")

from mp_slam_ros.ros.conversions import CameraModel  # noqa: E402
from mp_slam_ros.ros.images import (  # noqa: E402
    ImageLayoutError,
    ImageSizeMismatchError,
    InvalidDepthError,
    UnsupportedEncodingError,
    check_image_size,
    colour_from_msg,
    depth_m_from_msg,
    image_to_msg,
)

RNG = np.random.default_rng(3)


@pytest.mark.parametrize(("encoding", "order", "shape"), [("rgb8", "rgb", (4, 5, 3)), ("bgr8", "bgr", (4, 5, 3)), ("mono8", "mono", (4, 5))])
def test_colour_round_trip(encoding: str, order: str, shape: tuple[int, ...]) -> None:
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    image, got_order = colour_from_msg(image_to_msg(pixels, encoding, 5, "cam"), "/rgb")
    assert got_order == order and image.dtype == np.uint8
    np.testing.assert_array_equal(image, pixels)


def test_depth_16uc1_millimetres_and_32fc1_metres() -> None:
    mm = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(depth_m_from_msg(image_to_msg(mm, "16UC1", 0, "cam"), "/depth"), [[np.nan, 1.0], [1.5, 65.535]], rtol=1e-6)
    metres = np.array([[np.nan, 0.5], [2.0, 0.0], [np.inf, -1.0]], dtype=np.float32)
    depth = depth_m_from_msg(image_to_msg(metres, "32FC1", 0, "cam"), "/depth")
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, [[np.nan, 0.5], [2.0, np.nan], [np.nan, np.nan]])


def test_padded_rows_and_big_endian() -> None:
    mm = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint16)
    msg = image_to_msg(mm, "16UC1", 0, "cam")
    big = mm.astype(">u2")
    msg.is_bigendian = 1
    msg.step = 8  # 6 bytes of pixels + 2 bytes of padding per row
    msg.data = np.hstack([big.view(np.uint8), np.full((2, 2), 255, np.uint8)]).reshape(-1).tobytes()
    np.testing.assert_allclose(depth_m_from_msg(msg, "/depth"), mm * 1e-3, rtol=1e-6)


def test_typed_errors_name_topic_and_problem() -> None:
    pixels = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(UnsupportedEncodingError, match=r"/rgb: encoding '16UC1' is not supported") as caught:
        colour_from_msg(image_to_msg(np.ones((4, 5), np.uint16), "16UC1", 0, "c"), "/rgb")
    assert caught.value.problem == "unsupported_encoding"
    with pytest.raises(UnsupportedEncodingError, match="/depth: encoding 'rgb8'"):
        depth_m_from_msg(image_to_msg(pixels, "rgb8", 0, "c"), "/depth")
    msg = image_to_msg(pixels, "rgb8", 0, "c")
    msg.step = 10
    with pytest.raises(ImageLayoutError, match="step 10 is shorter than a row"):
        colour_from_msg(msg, "/rgb")
    msg = image_to_msg(pixels, "rgb8", 0, "c")
    msg.data = bytes(59)
    with pytest.raises(ImageLayoutError, match="data has 59 bytes, expected step x height = 15 x 4 = 60"):
        colour_from_msg(msg, "/rgb")
    with pytest.raises(InvalidDepthError, match="/depth: no valid depth"):
        depth_m_from_msg(image_to_msg(np.full((2, 2), np.nan, np.float32), "32FC1", 0, "c"), "/depth")
    with pytest.raises(InvalidDepthError):
        depth_m_from_msg(image_to_msg(np.zeros((2, 2), np.uint16), "16UC1", 0, "c"), "/depth")


def test_size_against_camera_info() -> None:
    camera = CameraModel("cam", 5, 4, np.eye(3), "plumb_bob", np.zeros(5), np.eye(3), np.zeros((3, 4)))
    check_image_size(np.zeros((4, 5)), camera, "/rgb")
    with pytest.raises(ImageSizeMismatchError, match="/rgb: image is 6x4 but camera_info says 5x4"):
        check_image_size(np.zeros((4, 6, 3)), camera, "/rgb")
