"""The presets in config/: ROS 2 parameter files whose keys are exactly the nodes' parameters.

Every parameter a preset sets exists in the node's config dataclasses and every dataclass
parameter is set by each preset (so a new option never silently misses a preset), the values pass
the dataclasses' validation, and bad files are refused naming the key and the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mp_slam_ros.config import flatten
from mp_slam_ros.errors import ConfigError, FileFormatError
from mp_slam_ros.presets import (
    CONFIG_DIR,
    LOOP_CLOSURE_NODE,
    VO_NODE,
    load_node_configs,
    node_parameters,
    parameters_for,
    read_parameter_file,
)

PRESETS = ("household_rgbd", "household_stereo", "low_power")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_keys_are_exactly_the_dataclass_parameters(preset: str) -> None:
    path = CONFIG_DIR / f"{preset}.yaml"
    blocks = read_parameter_file(path)
    # "/**/vo_node": the node in any namespace (a plain "vo_node" matches only "/vo_node")
    assert sorted(blocks) == sorted(f"/**/{node}" for node in node_parameters()), f"{path}: one block per node"
    for node, spec in node_parameters().items():
        keys = set(blocks[f"/**/{node}"])
        assert not keys - spec.keys(), f"{path}: {node} sets parameters no config dataclass has"
        assert not spec.keys() - keys, f"{path}: {node} misses dataclass parameters"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_values_load_through_the_dataclasses(preset: str) -> None:
    path = CONFIG_DIR / f"{preset}.yaml"
    for node in node_parameters():
        configs = load_node_configs(path, node)
        values = {key: value for config in configs for key, value in flatten(config).items()}
        for key, value in parameters_for(path, node).items():
            expected = pytest.approx(value) if isinstance(value, float) else value
            assert values[key] == expected, f"{path}: {node} {key}"


def test_presets_differ_where_they_should() -> None:
    def value(preset: str, node: str, key: str) -> object:
        return parameters_for(CONFIG_DIR / f"{preset}.yaml", node)[key]

    assert value("household_rgbd", VO_NODE, "mode") == "rgbd"
    assert value("household_stereo", VO_NODE, "mode") == "stereo"
    assert value("household_rgbd", VO_NODE, "ba.max_solve_time_ms") > 0.0  # a robot's solves keep pace
    for preset in ("household_rgbd", "household_stereo"):  # a wheeled robot's base moves along its heading
        assert value(preset, VO_NODE, "tracking.sideways_sigma_m") > 0.0 and value(preset, VO_NODE, "tracking.vertical_sigma_m") > 0.0
    assert value("low_power", VO_NODE, "ba.precision") == "mixed"
    assert value("low_power", LOOP_CLOSURE_NODE, "pgo.precision") == "mixed"
    assert value("low_power", VO_NODE, "frontend.max_features") < value("household_rgbd", VO_NODE, "frontend.max_features")


def test_every_parameter_file_in_config_is_accepted_by_the_nodes() -> None:
    """The single-node parameter files (vo.yaml, ...) set a subset; their keys and values must be
    valid too (plain option files such as kitti_stereo.yaml are `mp-slam vo --params` input)."""
    files = [path for path in sorted(CONFIG_DIR.glob("*.yaml")) if "ros__parameters" in path.read_text()]
    assert len(files) >= len(PRESETS)
    for path in files:
        blocks = read_parameter_file(path)
        for node in node_parameters():
            if any(key == node or key.endswith(f"/{node}") or key == "/**" for key in blocks):
                load_node_configs(path, node)


def test_unknown_parameter_and_bad_value_name_the_key_and_file(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("vo_node:\n  ros__parameters:\n    ba:\n      precisoin: fp16\n")
    with pytest.raises(ConfigError) as info:
        load_node_configs(unknown, VO_NODE)
    assert info.value.key == "ba.precisoin" and str(unknown) in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    pgo:\n      precision: fp8\n")
    with pytest.raises(ConfigError) as info:
        load_node_configs(bad, LOOP_CLOSURE_NODE)
    assert info.value.key == "pgo.precision" and "fp64" in str(info.value) and str(bad) in str(info.value)


def test_parameter_file_shape_errors(tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text("ba:\n  precision: fp16\n")
    with pytest.raises(FileFormatError, match="ros__parameters"):
        read_parameter_file(flat)
    broken = tmp_path / "broken.yaml"
    broken.write_text("vo_node:\n  ros__parameters: {mode: [\n")
    with pytest.raises(FileFormatError) as info:
        read_parameter_file(broken)
    assert info.value.line is not None


def test_namespaced_and_wildcard_blocks_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    publish_tf: false\n"
        "/robot1/vo_node:\n  ros__parameters:\n    publish_tf: true\n    ba: {precision: fp32}\n"
    )
    assert parameters_for(path, VO_NODE) == {"publish_tf": True, "ba.precision": "fp32"}
    assert parameters_for(path, LOOP_CLOSURE_NODE) == {"publish_tf": False}
