"""``vo_node`` fed bad input over real topics: every case is warned about, dropped (or reported
lost) and counted in ``/diagnostics``, and the node keeps tracking the good frames after it.

Good frames come from the generated sequence; the bad ones are edited copies of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from mp_slam_interfaces.srv import ResetToPose  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from test_vo_node import EVERY_FRAME, VOGraph, sequence, vo_graph  # noqa: E402,F401  (fixtures)

from mp_slam_ros.io.bags import BagReader  # noqa: E402
from mp_slam_ros.ros.conversions import ns_from_stamp, stamp_from_ns  # noqa: E402
from mp_slam_ros.ros.images import image_to_msg  # noqa: E402
from mp_slam_ros.ros.qos import TF_STATIC_QOS, reliable_qos  # noqa: E402

pytestmark = pytest.mark.ros
INPUTS = ("camera/color/image_raw", "camera/aligned_depth_to_color/image_raw", "camera/color/camera_info")
BAG_TOPICS = ("/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw", "/camera/color/camera_info")

Frame = list[Any]  # [Image rgb, Image depth, CameraInfo]


def bag_frames(bag_dir: Path, count: int) -> tuple[list[Frame], TFMessage]:
    """The first ``count`` RGB-D frames of the bag as rclpy messages, and its /tf_static."""
    types = {BAG_TOPICS[0]: Image, BAG_TOPICS[1]: Image, BAG_TOPICS[2]: CameraInfo, "/tf_static": TFMessage}
    by_stamp: dict[int, dict[str, Any]] = {}
    with BagReader(bag_dir) as bag:
        for message in bag.messages(list(types)):
            msg = deserialize_message(message.rawdata, types[message.topic])
            if message.topic == "/tf_static":
                tf_static = msg
            else:
                by_stamp.setdefault(ns_from_stamp(msg.header.stamp), {})[message.topic] = msg
    frames = [[parts[topic] for topic in BAG_TOPICS] for _, parts in sorted(by_stamp.items())]
    return frames[:count], tf_static


def restamped(frame: Frame, stamp_ns: int) -> Frame:
    """``frame`` with every header at ``stamp_ns``."""
    for msg in frame:
        msg.header.stamp = stamp_from_ns(stamp_ns)
    return frame


class Feeder:
    """Publishes frames into the node's inputs and waits until the node has dealt with each."""

    def __init__(self, graph: VOGraph) -> None:
        self.graph = graph
        qos = reliable_qos(100)
        self.publishers = [graph.listener.create_publisher(type_, f"{graph.prefix}/{name}", qos)
                           for name, type_ in zip(INPUTS, (Image, Image, CameraInfo))]
        for name, publisher in zip(INPUTS, self.publishers):
            graph.wait_for(lambda p=publisher: p.get_subscription_count() > 0, f"the node subscribed to {name}")

    def handled(self) -> int:
        counters = self.graph.node.counters
        return counters.processed + sum(counters.dropped.values()) + counters.paused_frames

    def send(self, frame: Frame, what: str, *, handled: int = 1) -> None:
        """Publish one synchronised set and wait until ``handled`` more frames were tracked or dropped."""
        before = self.handled()
        for publisher, msg in zip(self.publishers, frame):
            publisher.publish(msg)
        self.graph.wait_for(lambda: self.handled() >= before + handled, f"the node to handle {what}")


def edited(frame: Frame, part: int, **fields: Any) -> Frame:
    """A copy of ``frame`` whose message ``part`` has ``fields`` replaced (the others are shared)."""
    msg = frame[part]
    copy = type(msg)(**{name: getattr(msg, name) for name in msg.get_fields_and_field_types()})
    for name, value in fields.items():
        setattr(copy, name, value)
    return [copy if index == part else other for index, other in enumerate(frame)]


def with_depth(frame: Frame, depth: np.ndarray, encoding: str) -> Frame:
    """``frame`` with its depth image replaced by ``depth``."""
    header = frame[1].header
    return [frame[0], image_to_msg(depth, encoding, ns_from_stamp(header.stamp), header.frame_id), frame[2]]


def test_bad_input_is_dropped_counted_and_the_node_keeps_running(vo_graph, sequence: Path) -> None:
    graph = vo_graph("rgbd", remap_to_bag=False, use_sim_time=True, **EVERY_FRAME)
    odometry = graph.subscribe(Odometry, "odometry")
    frames, tf_static = bag_frames(sequence / "bag", 20)
    period_ns = ns_from_stamp(frames[1][0].header.stamp) - ns_from_stamp(frames[0][0].header.stamp)
    feeder = Feeder(graph)
    node = graph.node

    feeder.send(frames[0], "a frame before the extrinsics are known")
    assert node.counters.dropped["no_extrinsics"] == 1
    graph.listener.create_publisher(TFMessage, f"{graph.prefix}/tf_static", TF_STATIC_QOS).publish(tf_static)
    graph.wait_for(lambda: node.tf_buffer.can_transform("base_link", frames[0][2].header.frame_id), "/tf_static")
    for k in (1, 2):
        feeder.send(frames[k], f"good frame {k}")
    assert node.counters.processed == 2

    height, width = frames[0][0].height, frames[0][0].width
    bad_cases = {
        "unsupported_encoding": edited(frames[3], 0, encoding="yuv422"),
        "size_mismatch": edited(frames[4], 2, width=width + 2),
        "bad_camera_info": edited(frames[5], 2, k=np.zeros(9)),
        "invalid_depth": with_depth(frames[6], np.full((height, width), np.nan, np.float32), "32FC1"),
        "bad_layout": edited(frames[7], 0, data=bytes(frames[7][0].data)[:-5]),
    }
    for problem, frame in bad_cases.items():
        feeder.send(frame, problem)
        assert node.counters.dropped[problem] == 1, problem
    feeder.send(with_depth(frames[8], np.zeros((height, width), np.uint16), "16UC1"), "all-zero depth")
    assert node.counters.dropped["invalid_depth"] == 2

    flat = edited(frames[9], 0, data=np.full(height * width * 3, 128, np.uint8).tobytes())
    feeder.send(flat, "a textureless frame")
    assert node.counters.lost == 1  # reported lost: the predicted pose with an inflated covariance
    feeder.send(frames[10], "good frame 10")
    feeder.send(frames[14], "a frame after three missing ones")
    assert node.counters.missing_upstream == 3

    response = graph.call(ResetToPose, "reset_to_pose", ResetToPose.Request())
    assert response.success
    looped = restamped(frames[15], ns_from_stamp(frames[0][0].header.stamp) - 30 * period_ns)
    feeder.send(looped, "a frame 1.5 s back in time (bag looped)")
    assert node.counters.resets == 2  # reset_to_pose, then the time jump
    feeder.send(restamped(frames[16], ns_from_stamp(looped[0].header.stamp) + period_ns), "the next frame")
    graph.wait_for(lambda: len(odometry) == node.counters.processed, "the odometry of every tracked frame")
    assert abs(odometry[-1].pose.pose.position.x) < 0.05  # restarted at the identity by reset_to_pose
    lost = next(o for o in odometry if o.header.stamp == flat[0].header.stamp)
    assert np.diag(np.array(lost.pose.covariance).reshape(6, 6)).min() > 1.0

    clock = graph.listener.create_publisher(Clock, f"{graph.prefix}/clock", reliable_qos(10))
    graph.wait_for(lambda: clock.get_subscription_count() > 0, "the node subscribed to /clock")
    for seconds in (100, 101, 50):
        clock.publish(Clock(clock=stamp_from_ns(seconds * 10**9)))
        time.sleep(0.1)
    graph.wait_for(lambda: node.counters.clock_jumps >= 1, "a backward /clock jump")

    graph.wait_for(lambda: graph.diagnostics()["clock_jumps"] == str(node.counters.clock_jumps), "fresh /diagnostics")
    diagnostics = graph.diagnostics()
    assert {key: diagnostics[f"dropped.{key}"] for key in (*bad_cases, "no_extrinsics")} == {
        "unsupported_encoding": "1", "size_mismatch": "1", "bad_camera_info": "1", "invalid_depth": "2",
        "bad_layout": "1", "no_extrinsics": "1"}
    assert int(diagnostics["frames_dropped"]) == 7 and int(diagnostics["lost_frames"]) >= 1  # textureless (+ the frame after it)
    assert diagnostics["frames_missing_upstream"] == "3" and diagnostics["resets"] == "2"
    assert int(diagnostics["clock_jumps"]) >= 1 and int(diagnostics["frames_processed"]) == 7
    assert isinstance(graph.received["diagnostics"][-1], DiagnosticArray)


def test_frames_left_unpaired_are_warned_about_with_the_likely_cause(vo_graph, sequence: Path) -> None:
    graph = vo_graph("rgbd", remap_to_bag=False, **EVERY_FRAME)
    warned: list[str] = []
    graph.node.warnings._log = warned.append
    frames, _ = bag_frames(sequence / "bag", 12)
    feeder = Feeder(graph)
    for k, frame in enumerate(frames):  # every other depth image lost on the way
        for index, (publisher, msg) in enumerate(zip(feeder.publishers, frame)):
            if index != 1 or k % 2 == 0:
                publisher.publish(msg)
    graph.wait_for(lambda: any("left unsynchronised" in text for text in warned), "the unpaired-frames warning")
    text = next(text for text in warned if "left unsynchronised" in text)
    assert "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA" in text and "camera/color/image_raw" in text
