"""The launch files, started for real with ``launch.LaunchService``: both nodes come up as separate
processes with the preset's parameters, the launch arguments' overrides (``precision``,
``use_sim_time``), their namespace and the camera topic remappings.

Needs ``launch`` + ``launch_ros``: from a ROS 2 install, or in the venv from
``../shared/ros2-launch/install.sh`` (``scripts/test.sh`` runs it when that folder exists).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")
pytest.importorskip(
    "launch_ros",
    reason="launch_ros is not installed: source a ROS 2 install, or run ../shared/ros2-launch/install.sh .venv "
    "(scripts/test.sh does when ../shared/ros2-launch exists)",
)

import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription, RegisterEventHandler, Shutdown, TimerAction  # noqa: E402
from launch.event_handlers import OnProcessIO  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from mp_slam_ros.ros.param_client import RemoteParameters  # noqa: E402
from mp_slam_ros.presets import CONFIG_DIR, PRECISION_KEYS, node_parameters, parameters_for  # noqa: E402

pytestmark = pytest.mark.ros
LAUNCH_DIR = Path(__file__).resolve().parents[2] / "launch"
TIMEOUT_S = 90.0
#: parameters every rclpy node has besides the ones it declares
ROS_PARAMETERS = {"use_sim_time", "start_type_description_service"}


@dataclass
class Launched:
    """What the checker saw of one node started by the launch file."""

    parameters: dict[str, Any] = field(default_factory=dict)
    subscriptions: set[str] = field(default_factory=set)


@pytest.fixture
def launch_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ros_domain_id: int) -> int:
    """The launched processes inherit this test's domain id and log to a temporary folder."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain_id))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    return ros_domain_id


def run_launch(launch_file: str, arguments: dict[str, str], nodes: dict[str, set[str]], domain_id: int) -> tuple[dict[str, Launched], str]:
    """Launch ``launch_file`` with ``arguments``; inspect ``nodes`` (full name -> topics it must
    subscribe to) from a checker node.

    The launch service runs in this (main) thread, as it must; the checker thread waits for each
    node's subscriptions (created after its parameters are declared), reads all its parameters,
    then shuts the launch down.
    """
    output: list[str] = []
    seen: dict[str, Launched] = {}
    errors: list[str] = []
    service = launch.LaunchService(noninteractive=True)
    keep: Callable[[Any], None] = lambda event: output.append(event.text.decode(errors="replace"))
    service.include_launch_description(launch.LaunchDescription([
        RegisterEventHandler(OnProcessIO(on_stdout=keep, on_stderr=keep)),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_DIR / launch_file)), launch_arguments=arguments.items()),
        TimerAction(period=TIMEOUT_S, actions=[Shutdown(reason="test timeout")]),
    ]))

    def check() -> None:
        context = Context()
        context.init(domain_id=domain_id)
        checker = Node(f"launch_checker_{uuid.uuid4().hex[:6]}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(checker)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            for full_name, topics in nodes.items():
                remote = RemoteParameters(checker, full_name, timeout_s=TIMEOUT_S - 10)
                remote.wait_for_services()
                namespace, _, name = full_name.rpartition("/")
                launched = Launched()
                deadline = time.monotonic() + TIMEOUT_S - 10
                while time.monotonic() < deadline and not topics <= launched.subscriptions:
                    try:
                        launched.subscriptions = {t for t, _ in checker.get_subscriber_names_and_types_by_node(name, namespace or "/")}
                    except Exception:  # NodeNameNonExistentError until discovery sees it
                        pass
                    time.sleep(0.1)
                launched.parameters = remote.get(remote.names())
                seen[full_name] = launched
        except Exception as error:  # reported by the test, after the launch is down
            errors.append(repr(error))
        finally:
            service.shutdown()
            executor.shutdown()
            checker.destroy_node()
            context.try_shutdown()

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    service.run()
    thread.join(timeout=30)
    text = "".join(output)
    assert not errors, f"{errors}\nlaunch output:\n{text}"
    return seen, text


def expected_parameters(preset: Path, node: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's values for ``node`` with the launch arguments' overrides."""
    return {**parameters_for(preset, node), **overrides}


def assert_parameters(launched: Launched, node: str, expected: dict[str, Any]) -> None:
    """The node runs with exactly the declared set of parameters and the expected values."""
    spec = node_parameters()[node]
    declared = set(launched.parameters) - ROS_PARAMETERS - set(spec.extra)
    assert declared == spec.keys(), f"{node}: parameters differ from the config dataclasses"
    for key, value in expected.items():
        assert launched.parameters[key] == (pytest.approx(value) if isinstance(value, float) else value), f"{node}: {key}"


REMAPPED_CAMERA = {
    "rgbd": {"color_topic": "/cam/rgb", "depth_topic": "/cam/depth", "camera_info_topic": "/cam/info"},
    "stereo": {"left_topic": "/cam/left", "right_topic": "/cam/right", "left_info_topic": "/cam/left_info", "right_info_topic": "/cam/right_info"},
}


@pytest.mark.parametrize("preset", ["household_rgbd", "household_stereo", "low_power"])
def test_slam_launch_starts_both_nodes_with_each_preset(preset: str, launch_env: int) -> None:
    namespace = f"/launch_{uuid.uuid4().hex[:6]}"
    path = CONFIG_DIR / f"{preset}.yaml"
    remapped = REMAPPED_CAMERA[parameters_for(path, "vo_node")["mode"]]
    arguments = {"params_file": str(path), "namespace": namespace, "use_sim_time": "true", **remapped}
    overrides: dict[str, dict[str, Any]] = {node: {"use_sim_time": True} for node in node_parameters()}
    if preset == "low_power":  # the precision argument overrides the preset's mixed in both nodes
        arguments["precision"] = "fp32"
        for node, key in PRECISION_KEYS.items():
            overrides[node][key] = "fp32"
    nodes = {f"{namespace}/vo_node": set(remapped.values()), f"{namespace}/loop_closure_node": {f"{namespace}/keyframes"}}
    seen, output = run_launch("slam.launch.py", arguments, nodes, launch_env)
    for node in node_parameters():
        assert_parameters(seen[f"{namespace}/{node}"], node, expected_parameters(path, node, overrides[node]))
    assert set(remapped.values()) <= seen[f"{namespace}/vo_node"].subscriptions, output
    assert f"{namespace}/keyframes" in seen[f"{namespace}/loop_closure_node"].subscriptions, output


def test_single_node_launch_files_default_preset_and_keyframes_remap(launch_env: int) -> None:
    """vo.launch.py without params_file uses the preset of ``mode``; loop_closure.launch.py reads
    the keyframes of a vo_node elsewhere."""
    seen, output = run_launch("vo.launch.py", {"mode": "stereo"}, {"/vo_node": {"/left/image_rect"}}, launch_env)
    assert_parameters(seen["/vo_node"], "vo_node", expected_parameters(CONFIG_DIR / "household_stereo.yaml", "vo_node", {"use_sim_time": False}))
    seen, output = run_launch("loop_closure.launch.py", {"keyframes_topic": "/robot/keyframes", "precision": "fp16"},
                              {"/loop_closure_node": {"/robot/keyframes"}}, launch_env)
    expected = expected_parameters(CONFIG_DIR / "household_rgbd.yaml", "loop_closure_node", {"pgo.precision": "fp16"})
    assert_parameters(seen["/loop_closure_node"], "loop_closure_node", expected)


def test_bad_precision_stops_the_launch_with_the_reason(launch_env: int) -> None:
    service = launch.LaunchService(noninteractive=True)
    service.include_launch_description(launch.LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_DIR / "slam.launch.py")), launch_arguments={"precision": "fp8"}.items()),
    ]))
    assert service.run() != 0
