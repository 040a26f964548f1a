"""config/mp_slam.rviz (started by the launch files with ``rviz:=true``; rviz2 cannot be opened
here): a well-formed rviz2 configuration whose displays show TF, odometry, both paths, the
landmarks, the pose graph and the loop markers, each on a topic the running nodes publish with
the message type the display reads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")

from mp_slam_ros.ros.bringup import BringupOptions, SlamProcess  # noqa: E402
from mp_slam_ros.presets import CONFIG_DIR  # noqa: E402

pytestmark = pytest.mark.ros
RVIZ = CONFIG_DIR / "mp_slam.rviz"
#: the message type each topic display of rviz_default_plugins subscribes with
DISPLAY_TYPES = {
    "rviz_default_plugins/Odometry": "nav_msgs/msg/Odometry",
    "rviz_default_plugins/Path": "nav_msgs/msg/Path",
    "rviz_default_plugins/PointCloud2": "sensor_msgs/msg/PointCloud2",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
}


def load_rviz(path: Path) -> dict:
    """The parsed configuration, checked for the sections rviz2 reads."""
    config = yaml.safe_load(path.read_text())
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    manager = config["Visualization Manager"]
    assert {"Displays", "Global Options", "Tools", "Views"} <= set(manager)
    assert manager["Views"]["Current"]["Class"].startswith("rviz_default_plugins/")
    for display in manager["Displays"]:
        assert display["Class"].startswith("rviz_default_plugins/") and display["Name"] and display["Enabled"] in (True, False)
    return config


def test_rviz_config_shows_every_output() -> None:
    manager = load_rviz(RVIZ)["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "map"
    topics = {d["Topic"]["Value"]: d["Class"] for d in manager["Displays"] if "Topic" in d}
    assert topics == {
        "/odometry": "rviz_default_plugins/Odometry",
        "/path": "rviz_default_plugins/Path",  # odometry path (vo_node)
        "/map_path": "rviz_default_plugins/Path",  # optimised keyframes = pose-graph nodes (loop_closure_node)
        "/landmarks": "rviz_default_plugins/PointCloud2",
        "/loop_closures": "rviz_default_plugins/MarkerArray",
    }
    assert any(d["Class"] == "rviz_default_plugins/TF" for d in manager["Displays"])


def test_rviz_topics_are_published_by_the_nodes(ros_domain_id: int) -> None:
    """Both nodes started as ``mp-slam run`` starts them: every display's topic has a publisher of its type."""
    displays = [d for d in load_rviz(RVIZ)["Visualization Manager"]["Displays"] if "Topic" in d or d["Class"].endswith("/TF")]
    process = SlamProcess(BringupOptions(), domain_id=ros_domain_id)
    try:
        wanted = {d["Topic"]["Value"]: DISPLAY_TYPES[d["Class"]] for d in displays if "Topic" in d}
        wanted["/tf"] = "tf2_msgs/msg/TFMessage"  # the TF display
        published: dict[str, list[str]] = {}
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not set(wanted) <= set(published):
            published = {}
            for node in ("vo_node", "loop_closure_node"):
                for topic, types in process.helper.get_publisher_names_and_types_by_node(node, "/"):
                    published.setdefault(topic, []).extend(types)
            time.sleep(0.1)
        for topic, msg_type in wanted.items():
            assert msg_type in published.get(topic, []), f"{topic}: no {msg_type} publisher (published: {sorted(published)})"
    finally:
        process.close()
