"""``mp-slam play`` with real rclpy nodes: bag messages and /clock arrive on live topics."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from mp_slam_ros.errors import ConfigError  # noqa: E402
from mp_slam_ros.io.bags import BagReader, BagWriter  # noqa: E402
from mp_slam_ros.ros.player import BagPlayer, PlayOptions  # noqa: E402
from mp_slam_ros.sim import messages  # noqa: E402

pytestmark = pytest.mark.ros
START_NS = 1_700_000_000_000_000_000
N_FRAMES = 8
PERIOD_NS = 50_000_000  # 20 Hz
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _write_bag(path: Path, prefix: str) -> None:
    pixels = np.arange(12 * 16 * 3, dtype=np.uint8).reshape(12, 16, 3)
    with BagWriter(path) as bag:
        bag.add_topic(f"{prefix}/image", "sensor_msgs/msg/Image")
        bag.add_topic(f"{prefix}/odom", "nav_msgs/msg/Odometry")
        bag.add_topic(f"{prefix}/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        bag.write(f"{prefix}/tf_static", START_NS, messages.tf_msg([messages.transform_stamped(np.eye(4), START_NS, "base_link", "cam")]))
        for k in range(N_FRAMES):
            stamp = START_NS + k * PERIOD_NS
            bag.write(f"{prefix}/image", stamp, messages.image_msg(pixels + k, stamp, "cam"))
            bag.write(f"{prefix}/odom", stamp, messages.odometry_msg(stamp, 0.1 * k, 0.0, 0.0, 0.1, 0.0, "odom", "base_link"))


def _play_in_thread(player: BagPlayer, stop: threading.Event) -> tuple[threading.Thread, list[int]]:
    published: list[int] = []
    thread = threading.Thread(target=lambda: published.append(player.play(should_stop=stop.is_set)), daemon=True)
    thread.start()
    return thread, published


def test_messages_and_clock_arrive(node_pair, tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", node_pair.prefix)
    images: list[Image] = []
    odoms: list[Odometry] = []
    clocks: list[Clock] = []
    node_pair.listener.create_subscription(Image, node_pair.topic("image"), images.append, RELIABLE)
    node_pair.listener.create_subscription(Odometry, node_pair.topic("odom"), odoms.append, RELIABLE)
    node_pair.listener.create_subscription(Clock, "/clock", clocks.append, QoSProfile(depth=100))
    with BagReader(tmp_path / "bag") as bag:
        player = BagPlayer(node_pair.talker, bag, PlayOptions(rate=1.0, clock_hz=100.0))
        assert player.skipped == {}
        node_pair.spin_until(lambda: node_pair.talker.count_subscribers(node_pair.topic("image")) > 0, "image subscriber")
        node_pair.spin_until(lambda: node_pair.talker.count_subscribers("/clock") > 0, "clock subscriber")
        stop = threading.Event()
        thread, published = _play_in_thread(player, stop)
        node_pair.spin_until(lambda: len(images) == N_FRAMES and len(odoms) == N_FRAMES and not thread.is_alive(), "all messages")
        thread.join()
    assert published == [2 * N_FRAMES + 1]
    for k, image in enumerate(images):
        assert image.header.stamp.sec * 10**9 + image.header.stamp.nanosec == START_NS + k * PERIOD_NS
        assert (image.width, image.height, image.encoding) == (16, 12, "rgb8")
        np.testing.assert_array_equal(np.asarray(image.data, np.uint8).reshape(12, 16, 3), np.arange(576, dtype=np.uint8).reshape(12, 16, 3) + k)
    assert [round(o.pose.pose.position.x, 6) for o in odoms] == [round(0.1 * k, 6) for k in range(N_FRAMES)]
    node_pair.spin_until(lambda: len(clocks) >= 5, "/clock")
    clock_ns = [c.clock.sec * 10**9 + c.clock.nanosec for c in clocks]
    assert all(START_NS <= t <= START_NS + N_FRAMES * PERIOD_NS + 10**8 for t in clock_ns)
    assert clock_ns == sorted(clock_ns)


def test_latched_topic_and_start_offset(node_pair, tmp_path: Path) -> None:
    from tf2_msgs.msg import TFMessage

    _write_bag(tmp_path / "bag", node_pair.prefix)
    odoms: list[Odometry] = []
    node_pair.listener.create_subscription(Odometry, node_pair.topic("odom"), odoms.append, RELIABLE)
    with BagReader(tmp_path / "bag") as bag:
        player = BagPlayer(node_pair.talker, bag, PlayOptions(rate=4.0, start_offset_s=0.2))
        node_pair.spin_until(lambda: node_pair.talker.count_subscribers(node_pair.topic("odom")) > 0, "odom subscriber")
        thread, published = _play_in_thread(player, threading.Event())
        node_pair.spin_until(lambda: not thread.is_alive() and len(odoms) == N_FRAMES - 4, "odometry after the offset")
    assert published == [1 + 2 * (N_FRAMES - 4)]  # tf_static (latched, before the offset) + frames 4..7
    assert odoms[0].header.stamp.nanosec == 4 * PERIOD_NS
    # a subscriber that comes late still gets the latched /tf_static
    latched: list[TFMessage] = []
    node_pair.listener.create_subscription(TFMessage, node_pair.topic("tf_static"), latched.append, LATCHED)
    node_pair.spin_until(lambda: bool(latched), "latched /tf_static")
    assert latched[0].transforms[0].child_frame_id == "cam"


def test_loop_replays_until_stopped(node_pair, tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", node_pair.prefix)
    odoms: list[Odometry] = []
    node_pair.listener.create_subscription(Odometry, node_pair.topic("odom"), odoms.append, RELIABLE)
    with BagReader(tmp_path / "bag") as bag:
        player = BagPlayer(node_pair.talker, bag, PlayOptions(rate=8.0, loop=True, topics=(node_pair.topic("odom"),)))
        node_pair.spin_until(lambda: node_pair.talker.count_subscribers(node_pair.topic("odom")) > 0, "odom subscriber")
        stop = threading.Event()
        thread, _ = _play_in_thread(player, stop)
        node_pair.spin_until(lambda: len(odoms) >= 2 * N_FRAMES + 2, "a second pass")
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    stamps = [o.header.stamp.nanosec for o in odoms]
    assert stamps[N_FRAMES] == stamps[0] == 0 and stamps[N_FRAMES + 1] == PERIOD_NS  # time restarts each pass


def test_delay_lets_a_late_subscriber_get_every_message(node_pair, tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", node_pair.prefix)
    odoms: list[Odometry] = []
    with BagReader(tmp_path / "bag") as bag:
        player = BagPlayer(node_pair.talker, bag, PlayOptions(rate=8.0, delay_s=3.0, topics=(node_pair.topic("odom"),)))
        started = time.monotonic()
        thread, published = _play_in_thread(player, threading.Event())
        # subscribed only after the player started: discovery happens during the delay
        node_pair.listener.create_subscription(
            Odometry, node_pair.topic("odom"), lambda msg: odoms.append((time.monotonic(), msg)), RELIABLE
        )
        node_pair.spin_until(lambda: not thread.is_alive() and len(odoms) == N_FRAMES, "every odometry message")
    assert published == [N_FRAMES]
    assert odoms[0][0] - started >= 3.0


def test_bad_options_and_offsets(node_pair, tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", node_pair.prefix)
    with pytest.raises(ConfigError, match="rate=0.0: must be > 0"):
        PlayOptions(rate=0.0).validate()
    with pytest.raises(ConfigError, match="delay=-1.0: must be in"):
        PlayOptions(delay_s=-1.0).validate()
    with BagReader(tmp_path / "bag") as bag:
        player = BagPlayer(node_pair.talker, bag, PlayOptions(start_offset_s=5.0))
        with pytest.raises(ConfigError, match="beyond the bag's end"):
            player.play()


def test_cli_play(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mp_slam_ros.cli.main import main

    _write_bag(tmp_path / "bag", "/mp_slam_cli_play_test")
    assert main(["play", str(tmp_path / "bag"), "--rate", "10", "--clock", "--no-progress"]) == 0
    assert f"published {2 * N_FRAMES + 1} messages" in capsys.readouterr().out
    assert main(["play", str(tmp_path / "absent"), "--no-progress"]) == 1
    assert "absent: no such bag" in capsys.readouterr().err
