"""rosbag2 (MCAP) writer/reader: round trip of every message type, and clear errors on bad bags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.io.bags import BagError, BagReader, BagWriter, image_array, stamp_ns
from mp_slam_ros.sim import messages

STAMP = 1_700_000_000_123_456_789
CAMERA = PinholeCamera(50.0, 50.0, 15.5, 11.5, width=32, height=24)


def _write_sample(path: Path, compression: str = "zstd") -> dict[str, object]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    depth16 = rng.integers(0, 6000, (24, 32), dtype=np.uint16)
    depth32 = rng.uniform(0.2, 6.0, (24, 32)).astype(np.float32)
    T = np.eye(4)
    T[:3, 3] = [1.0, 2.0, 0.5]
    payload = {"rgb": rgb, "depth16": depth16, "depth32": depth32, "T": T}
    with BagWriter(path, compression) as bag:
        for topic, msgtype in [("/rgb", "sensor_msgs/msg/Image"), ("/d16", "sensor_msgs/msg/Image"), ("/d32", "sensor_msgs/msg/Image"),
                               ("/info", "sensor_msgs/msg/CameraInfo"), ("/odom", "nav_msgs/msg/Odometry"), ("/gt", "tf2_msgs/msg/TFMessage")]:
            bag.add_topic(topic, msgtype)
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        bag.write("/tf_static", STAMP, messages.tf_msg([messages.transform_stamped(T, STAMP, "base_link", "cam")]))
        for k in range(3):
            stamp = STAMP + k * 33_333_333
            bag.write("/rgb", stamp, messages.image_msg(rgb, stamp, "cam"))
            bag.write("/d16", stamp, messages.image_msg(depth16, stamp, "cam"))
            bag.write("/d32", stamp, messages.image_msg(depth32, stamp, "cam"))
            bag.write("/info", stamp, messages.camera_info_msg(CAMERA, stamp, "cam", baseline_m=0.1))
            bag.write("/odom", stamp, messages.odometry_msg(stamp, 1.0, 2.0, 0.3, 0.25, -0.1, "odom", "base_link"))
            bag.write("/gt", stamp, messages.tf_msg([messages.transform_stamped(T, stamp, "world", "base_link")]))
    return payload


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_round_trip_of_every_topic(tmp_path: Path, compression: str) -> None:
    payload = _write_sample(tmp_path / "bag", compression)
    with BagReader(tmp_path / "bag") as bag:
        assert bag.message_count == 19
        assert bag.start_ns == STAMP and bag.end_ns == STAMP + 2 * 33_333_333
        assert bag.qos("/tf_static")[0].durability.name == "TRANSIENT_LOCAL"
        assert bag.qos("/rgb")[0].durability.name == "VOLATILE"
        seen: dict[str, int] = {}
        for message, msg in bag.decoded():
            seen[message.topic] = seen.get(message.topic, 0) + 1
            if message.topic in ("/rgb", "/d16", "/d32"):
                key = {"/rgb": "rgb", "/d16": "depth16", "/d32": "depth32"}[message.topic]
                np.testing.assert_array_equal(image_array(msg), payload[key], strict=True)
                assert stamp_ns(msg.header) == message.stamp_ns
            elif message.topic == "/info":
                np.testing.assert_array_equal(msg.k.reshape(3, 3), CAMERA.K)
                assert msg.p[3] == pytest.approx(-CAMERA.fx * 0.1)
                assert (msg.width, msg.height, msg.distortion_model) == (32, 24, "plumb_bob")
            elif message.topic == "/odom":
                assert msg.pose.pose.position.x == 1.0 and msg.twist.twist.angular.z == -0.1
                assert msg.child_frame_id == "base_link" and msg.header.frame_id == "odom"
            else:
                transform = msg.transforms[0].transform
                assert (transform.translation.x, transform.translation.y, transform.translation.z) == (1.0, 2.0, 0.5)
                assert transform.rotation.w == 1.0
    assert seen == {"/tf_static": 1, "/rgb": 3, "/d16": 3, "/d32": 3, "/info": 3, "/odom": 3, "/gt": 3}


def test_filters_topics_and_start_time(tmp_path: Path) -> None:
    _write_sample(tmp_path / "bag")
    with BagReader(tmp_path / "bag") as bag:
        stamps = [m.stamp_ns for m in bag.messages(["/odom"], start_ns=STAMP + 1)]
    assert stamps == [STAMP + 33_333_333, STAMP + 66_666_666]


def test_missing_topics_are_named(tmp_path: Path) -> None:
    _write_sample(tmp_path / "bag")
    with BagReader(tmp_path / "bag") as bag:
        bag.require({"/rgb": "sensor_msgs/msg/Image"})
        with pytest.raises(BagError, match=r"missing expected topics: /camera/image \(sensor_msgs/msg/Image\), /odom \(sensor_msgs/msg/Image\) has type nav_msgs/msg/Odometry"):
            bag.require({"/camera/image": "sensor_msgs/msg/Image", "/odom": "sensor_msgs/msg/Image"})


def test_nonexistent_bag(tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"absent: no such bag"):
        BagReader(tmp_path / "absent")


def test_not_a_bag(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match=r"notes\.txt: not a rosbag2"):
        BagReader(tmp_path / "notes.txt")


def test_truncated_bag(tmp_path: Path) -> None:
    _write_sample(tmp_path / "bag")
    mcap = tmp_path / "bag" / "bag.mcap"
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match=r"bag: cannot (open bag|read messages) \(corrupt or truncated\?\)"):
        with BagReader(tmp_path / "bag") as bag:
            list(bag.messages())


def test_corrupt_bag(tmp_path: Path) -> None:
    _write_sample(tmp_path / "bag")
    mcap = tmp_path / "bag" / "bag.mcap"
    data = bytearray(mcap.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64
    mcap.write_bytes(bytes(data))
    with pytest.raises(BagError, match=r"corrupt or truncated|cannot decode"):
        with BagReader(tmp_path / "bag") as bag:
            for _ in bag.decoded():
                pass


def test_corrupt_metadata(tmp_path: Path) -> None:
    _write_sample(tmp_path / "bag")
    (tmp_path / "bag" / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 8\n")
    with pytest.raises(BagError, match=r"bag: cannot open bag"):
        with BagReader(tmp_path / "bag"):
            pass


def test_writer_refuses_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    with pytest.raises(BagError, match="exists already"):
        with BagWriter(tmp_path / "bag"):
            pass
