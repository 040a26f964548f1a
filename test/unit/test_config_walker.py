"""The generic options walker (mp_slam_ros.config) on VOConfig: dotted keys everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from mp_slam_ros.config import describe, flatten, load_yaml, with_updates
from mp_slam_ros.errors import ConfigError, FileFormatError
from mp_slam_ros.pipelines.vo_config import SensorMode, VOConfig
from mp_slam_ros.precision import Precision


def test_flatten_names_every_leaf_with_plain_values() -> None:
    flat = flatten(VOConfig())
    assert flat["ba.precision"] == "fp64" and flat["ba.window_size"] == 50 and flat["mode"] == "rgbd"
    assert set(flat) == set(describe(VOConfig))
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())


def test_with_updates_coerces_strings_and_leaves_the_original() -> None:
    base = VOConfig()
    new = with_updates(base, {"ba.precision": "FP32", "frontend.max_features": "300", "ba.synchronous": "true", "mode": "stereo"})
    assert new.ba.precision is Precision.FP32 and new.frontend.max_features == 300 and new.ba.synchronous is True
    assert new.mode is SensorMode.STEREO
    assert base.ba.precision is Precision.FP64 and base.frontend.max_features == 500


@pytest.mark.parametrize(
    ("updates", "key", "words"),
    [
        ({"ba.window_size": 1}, "ba.window_size", ">= 2"),
        ({"ba.precision": "fp8"}, "ba.precision", "one of"),
        ({"ba.windowsize": 10}, "ba.windowsize", "unknown option"),
        ({"frontend.max_features": 2.5}, "frontend.max_features", "integer"),
        ({"ba.synchronous": 1}, "ba.synchronous", "boolean"),
        ({"tracking.min_inliers": True}, "tracking.min_inliers", "not a boolean"),
        ({"frontend.min_depth_m": 9.0}, "frontend.min_depth_m", "max_depth_m"),
        ({"ba.fixed_keyframes": 60}, "ba.fixed_keyframes", "window_size"),
        ({"tracking.ransac_reprojection_px": float("nan")}, "tracking.ransac_reprojection_px", "NaN"),
    ],
)
def test_bad_values_name_the_dotted_key(updates: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        with_updates(VOConfig(), updates)
    assert caught.value.key == key


def test_load_yaml_nested_dotted_and_ros_parameter_files(tmp_path: Path) -> None:
    nested = tmp_path / "nested.yaml"
    nested.write_text("ba:\n  precision: fp64\n  window_size: 20\nfrontend.max_features: 200\n")
    config = load_yaml(nested, VOConfig)
    assert (config.ba.precision, config.ba.window_size, config.frontend.max_features) == (Precision.FP64, 20, 200)
    ros = tmp_path / "ros.yaml"
    ros.write_text("vo_node:\n  ros__parameters:\n    mode: stereo\n    ba:\n      solver: cgnr\n")
    config = load_yaml(ros, VOConfig)
    assert config.mode is SensorMode.STEREO and config.ba.solver.value == "cgnr"


def test_load_yaml_errors_name_key_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ba:\n  max_iterations: 0\n")
    with pytest.raises(ConfigError, match="bad.yaml") as caught:
        load_yaml(bad, VOConfig)
    assert caught.value.key == "ba.max_iterations"
    broken = tmp_path / "broken.yaml"
    broken.write_text("ba: [1, 2\n")
    with pytest.raises(FileFormatError, match="broken.yaml"):
        load_yaml(broken, VOConfig)
    with pytest.raises(FileFormatError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml", VOConfig)


def test_preset_file_lists_every_option() -> None:
    preset = Path(__file__).resolve().parents[2] / "config" / "vo.yaml"
    config = load_yaml(preset, VOConfig)
    import yaml

    data = yaml.safe_load(preset.read_text())
    block = next(iter(data.values()))["ros__parameters"]
    keys = set()
    for section, values in block.items():
        keys |= {f"{section}.{k}" for k in values} if isinstance(values, dict) else {section}
    assert keys == set(flatten(config))
