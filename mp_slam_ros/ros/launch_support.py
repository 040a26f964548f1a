"""The launch descriptions behind ``launch/*.launch.py`` (one-line wrappers around :func:`launch_description`).

Arguments (``ros2 launch mp_slam_ros slam.launch.py name:=value``):

* ``params_file``: a ROS 2 parameter file (default: the ``household_<mode>.yaml`` preset beside
  the launch file); validated through the config dataclasses before any node starts;
* ``mode`` (rgbd|stereo; empty: the parameter file's), ``precision`` (sets ``ba.precision`` of
  vo_node and ``pgo.precision`` of loop_closure_node; empty: the file's);
* ``use_sim_time``, ``namespace``, ``rviz`` (rviz2 with ``config/mp_slam.rviz``);
* camera topic remappings: ``color_topic``, ``depth_topic``, ``camera_info_topic`` (rgbd),
  ``left_topic``, ``right_topic``, ``left_info_topic``, ``right_info_topic`` (stereo), and
  ``keyframes_topic`` (what loop_closure_node reads).

Executables come from ``lib/mp_slam_ros`` of the package's prefix (colcon), else from the bin/
of the running Python (a pip virtualenv, where ``ros2-launch`` stands in for ``ros2 launch``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.nodes.vo_inputs import INPUT_TOPICS
from mp_slam_ros.pipelines.vo_config import SensorMode, VOConfig
from mp_slam_ros.presets import LOOP_CLOSURE_NODE, OUTPUT_REMAPPINGS, PRECISION_KEYS, VO_NODE, configs_from_parameters, parameters_for

PACKAGE = "mp_slam_ros"
#: launch argument of each camera input, in the order of vo_node's INPUT_TOPICS per mode
CAMERA_ARGUMENTS: dict[SensorMode, tuple[str, ...]] = {
    SensorMode.RGBD: ("color_topic", "depth_topic", "camera_info_topic"),
    SensorMode.STEREO: ("left_topic", "right_topic", "left_info_topic", "right_info_topic"),
}
#: (name, default, description) of the arguments every launch file declares
COMMON_ARGUMENTS = (
    ("params_file", "", "ROS 2 parameter file (default: the household_<mode>.yaml preset)"),
    ("mode", "", "rgbd or stereo (default: the parameter file's)"),
    ("precision", "", "fp64, fp32, fp16 or mixed: ba.precision and pgo.precision (default: the parameter file's)"),
    ("use_sim_time", "false", "use /clock (bag replay with --clock)"),
    ("namespace", "", "namespace of the nodes and their relative topics"),
    ("rviz", "false", "start rviz2 with config/mp_slam.rviz"),
)


def camera_remappings(mode: SensorMode, topics: dict[str, str]) -> list[tuple[str, str]]:
    """(vo_node's input name, topic) for the camera inputs of ``mode``; ``topics`` by argument name."""
    names = [name for name, _ in INPUT_TOPICS[mode]]
    return [(name, topics[argument]) for name, argument in zip(names, CAMERA_ARGUMENTS[mode])]


def executable(name: str) -> dict[str, str]:
    """``Node`` keywords running console script ``name``: package form under colcon, else a path."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        if Path(get_package_prefix(PACKAGE), "lib", PACKAGE, name).exists():
            return {"package": PACKAGE, "executable": name}
    except (ImportError, PackageNotFoundError):
        pass
    return {"executable": str(Path(sys.executable).parent / name)}


def node_overrides(node: str, params_file: Path, mode: str, precision: str, use_sim_time: bool) -> dict[str, object]:
    """The parameters the launch arguments set on ``node``, checked with the file's through the dataclasses."""
    overrides: dict[str, object] = {"use_sim_time": use_sim_time}
    if mode and node == VO_NODE:
        overrides["mode"] = mode
    if precision:
        overrides[PRECISION_KEYS[node]] = precision
    configs_from_parameters(node, {**parameters_for(params_file, node), **overrides}, f"{params_file} with the launch arguments")
    return overrides


def _argument(context: LaunchContext, name: str) -> str:
    return LaunchConfiguration(name).perform(context).strip()


def _flag(context: LaunchContext, name: str) -> bool:
    """A boolean launch argument (true/false, any case); ConfigError naming it otherwise."""
    value = _argument(context, name).lower()
    if value not in ("true", "false"):
        raise ConfigError(name, value, "must be true or false")
    return value == "true"


def _nodes(context: LaunchContext, nodes: Sequence[str], config_dir: Path) -> list[Node]:
    """The node actions, from the launch arguments' values (an OpaqueFunction: values are known here)."""
    mode, precision = _argument(context, "mode"), _argument(context, "precision")
    use_sim_time = _flag(context, "use_sim_time")
    params_file = Path(_argument(context, "params_file") or config_dir / f"household_{mode or 'rgbd'}.yaml")
    if not params_file.is_file():
        raise ConfigError("params_file", str(params_file), "no such file")
    actions = []
    for node in nodes:
        overrides = node_overrides(node, params_file, mode, precision, use_sim_time)
        if node == VO_NODE:
            node_mode = SensorMode(mode or parameters_for(params_file, node).get("mode", VOConfig().mode.value))
            remappings = camera_remappings(node_mode, {name: _argument(context, name) for name in CAMERA_ARGUMENTS[node_mode]})
        else:
            remappings = [("keyframes", _argument(context, "keyframes_topic"))]
        remappings += list(OUTPUT_REMAPPINGS[node])
        actions.append(Node(
            **executable(node), name=node, namespace=_argument(context, "namespace"),
            parameters=[str(params_file), overrides], remappings=remappings, output="screen",
        ))
    return actions


def launch_description(nodes: Sequence[str], launch_file: str | Path) -> LaunchDescription:
    """Arguments, ``nodes`` (vo_node and/or loop_closure_node) and the optional rviz2 of a launch file.

    ``launch_file``: the calling file; presets and the rviz config are in ``../config`` beside it
    (the source tree and ``share/mp_slam_ros`` have the same layout).
    """
    config_dir = Path(launch_file).resolve().parent.parent / "config"
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in COMMON_ARGUMENTS]
    if VO_NODE in nodes:
        arguments += [
            DeclareLaunchArgument(argument, default_value=topic, description=f"{mode.value}: topic of vo_node's {topic}")
            for mode in SensorMode
            for argument, topic in zip(CAMERA_ARGUMENTS[mode], (name for name, _ in INPUT_TOPICS[mode]))
        ]
    if LOOP_CLOSURE_NODE in nodes:
        arguments.append(DeclareLaunchArgument("keyframes_topic", default_value="keyframes", description="keyframes read by loop_closure_node"))
    rviz = Node(
        package="rviz2", executable="rviz2", arguments=["-d", str(config_dir / "mp_slam.rviz")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes, args=[tuple(nodes), config_dir]), rviz])
