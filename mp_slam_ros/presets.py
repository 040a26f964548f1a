"""The parameters of each node and the ROS 2 parameter files (presets) that set them.

Each node declares its parameters by walking option trees (:mod:`mp_slam_ros.ros.params`):
``vo_node`` walks :class:`VONodeOptions` and :class:`VOConfig`, ``loop_closure_node`` its node
options and :class:`LoopClosureConfig`. This module knows those trees, so a parameter file (``<node>: ros__parameters: {...}``, e.g. ``config/household_rgbd.yaml``) can be
validated, split per tree and compared key by key with what the nodes declare, here and in the
launch files, ``mp-slam run`` and the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mp_slam_ros.config import _flatten_mapping, describe, node_key_matches, options_from, read_yaml_mapping
from mp_slam_ros.errors import ConfigError, FileFormatError
from mp_slam_ros.node_options.loop_closure import LoopClosureNodeOptions
from mp_slam_ros.node_options.vo import VONodeOptions
from mp_slam_ros.pipelines.loop_closure_config import LoopClosureConfig
from mp_slam_ros.pipelines.vo_config import VOConfig

VO_NODE = "vo_node"
LOOP_CLOSURE_NODE = "loop_closure_node"
#: the parameter each node's solver precision is set by (``--precision``, the launch argument)
PRECISION_KEYS = {VO_NODE: "ba.precision", LOOP_CLOSURE_NODE: "pgo.precision"}
#: output remappings when both nodes share a namespace: each publishes a ``path`` (odom / map)
OUTPUT_REMAPPINGS: dict[str, tuple[tuple[str, str], ...]] = {VO_NODE: (), LOOP_CLOSURE_NODE: (("path", "map_path"),)}
#: Directory of the presets and the rviz config in a source checkout (installed: share/mp_slam_ros/config).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@dataclass(frozen=True)
class NodeParameters:
    """What one node declares: the option trees it walks and parameters declared by hand."""

    name: str
    trees: tuple[type, ...]
    extra: tuple[str, ...] = ()

    def keys(self) -> set[str]:
        """Every dotted parameter name of the trees (the hand-declared ones not included)."""
        return {key for tree in self.trees for key in describe(tree)}


def node_parameters() -> dict[str, NodeParameters]:
    """The parameters of both nodes by node name."""
    return {
        VO_NODE: NodeParameters(VO_NODE, (VONodeOptions, VOConfig), extra=("camera_to_base",)),
        LOOP_CLOSURE_NODE: NodeParameters(LOOP_CLOSURE_NODE, (LoopClosureNodeOptions, LoopClosureConfig)),
    }


def read_parameter_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{top-level key: {dotted name: value}}`` of a ROS 2 parameter file.

    Raises :class:`FileFormatError` (naming the file and line) when it is not valid YAML or not
    of the form ``<node>: ros__parameters: {...}``.
    """
    data = read_yaml_mapping(path)
    if not data:
        raise FileFormatError(path, None, "expected a ROS 2 parameter file: <node>: ros__parameters: {...}")
    blocks: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if not isinstance(value, Mapping) or not isinstance(value.get("ros__parameters"), Mapping):
            raise FileFormatError(path, None, f"{key}: expected a 'ros__parameters' mapping")
        blocks[str(key)] = _flatten_mapping(value["ros__parameters"])
    return blocks


def parameters_for(path: str | Path, node: str) -> dict[str, Any]:
    """The dotted parameters a node named ``node`` reads from the file (later blocks win, as in ROS)."""
    merged: dict[str, Any] = {}
    for key, values in read_parameter_file(path).items():
        if node_key_matches(key, node):
            merged.update(values)
    return merged


def configs_from_parameters(node: str, values: Mapping[str, Any], source: str = "parameters") -> tuple[object, ...]:
    """One validated config per option tree of ``node`` (defaults for absent keys).

    Raises :class:`ConfigError` naming the dotted key for an unknown parameter or a bad value;
    ``use_sim_time`` and the node's hand-declared parameters are accepted and not part of any tree.
    """
    spec = node_parameters()[node]
    trees = {tree: describe(tree) for tree in spec.trees}
    for key, value in values.items():
        if key != "use_sim_time" and key not in spec.extra and not any(key in infos for infos in trees.values()):
            valid = ", ".join(sorted(spec.keys()))
            raise ConfigError(key, value, f"unknown parameter of {node} (in {source}; valid: {valid})")
    return tuple(
        options_from(tree, {k: v for k, v in values.items() if k in infos}, f"{source}, node {node}")
        for tree, infos in trees.items()
    )


def load_node_configs(path: str | Path, node: str) -> tuple[object, ...]:
    """The validated configs of ``node`` set by the parameter file at ``path``."""
    return configs_from_parameters(node, parameters_for(path, node), str(path))


def pipeline_options(node: str, values: Mapping[str, Any], source: str | Path) -> tuple[object, list[str]]:
    """What an offline run (``mp-slam vo``/``slam``) takes from the dotted ``values`` of ``node``'s
    block of a parameter file (:func:`parameters_for`, or the CLI's own read): the node's pipeline
    config, validated with all the node's parameters as the node would (an unknown key, e.g. a
    misspelt one, raises :class:`ConfigError` naming it and ``source``), and the names of the
    node's own parameters the block sets (``publish_tf``, topics, QoS), which have no use offline."""
    pipeline = describe(node_parameters()[node].trees[-1])
    return configs_from_parameters(node, values, str(source))[-1], sorted(key for key in values if key not in pipeline)
