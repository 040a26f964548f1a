"""Synthetic pose graphs: separate loop-closure noise and systematic odometry bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry import lie
from mp_slam_ros.io.g2o import read_g2o
from mp_slam_ros.sim.pose_graphs import GraphNoise, SyntheticPoseGraph, grid_graph, household_graph


def _residual_xi(problem: SyntheticPoseGraph) -> np.ndarray:
    """Tangent error ``(E, k)`` of every measured edge against the true relative pose."""
    graph, T_true = problem.graph, problem.T_world_node_true
    inverse, log = (lie.se3_inverse, lie.se3_log) if graph.dim == 3 else (lie.se2_inverse, lie.se2_log)
    T_true_rel = inverse(T_true[graph.edge_from]) @ T_true[graph.edge_to]
    return log(inverse(T_true_rel) @ graph.T_from_to)


@pytest.mark.parametrize("dim", [2, 3])
def test_each_edge_kind_has_the_spread_and_information_of_its_own_sigma(dim: int) -> None:
    noise = GraphNoise(translation_m=0.01, rotation_rad=0.002, loop_translation_m=0.001, loop_rotation_rad=0.0002)
    problem = household_graph(1500, dim=dim, seed=3, noise=noise)
    graph = problem.graph
    k, d = (6, 3) if dim == 3 else (3, 2)
    xi = _residual_xi(problem)
    assert graph.is_loop.sum() > 150
    for is_loop, (sigma_t, sigma_r) in ((False, (0.01, 0.002)), (True, (0.001, 0.0002))):
        rows = graph.is_loop == is_loop
        expected = np.r_[np.full(d, sigma_t), np.full(k - d, sigma_r)]
        # sample std of >= 150 Gaussian draws is within ~12 % (2 sigma) of the true one
        np.testing.assert_allclose(xi[rows].std(axis=0), expected, rtol=0.2)
        np.testing.assert_allclose(graph.information[rows], np.broadcast_to(np.diag(expected**-2.0), (rows.sum(), k, k)),
                                   rtol=1e-9)


def test_correlated_loop_information_is_the_inverse_of_its_covariance() -> None:
    noise = GraphNoise(correlated=True, loop_translation_m=0.002, loop_rotation_rad=0.0004)
    graph = grid_graph(300, dim=3, seed=5, noise=noise).graph
    odometry, loop = graph.information[~graph.is_loop][0], graph.information[graph.is_loop][0]
    sigma_ratio = np.r_[np.full(3, 0.05 / 0.002), np.full(3, 0.01 / 0.0004)]
    # same correlation, smaller sigmas: loop covariance = D odometry covariance D, D = diag(1/ratio)
    np.testing.assert_allclose(loop, odometry * sigma_ratio[:, None] * sigma_ratio[None, :], rtol=1e-9)
    assert np.count_nonzero(loop - np.diag(np.diag(loop))) > 0


def test_loop_noise_leaves_odometry_and_initial_estimate_unchanged() -> None:
    default = household_graph(400, seed=7).graph
    same = household_graph(400, seed=7, noise=GraphNoise(loop_translation_m=0.05, loop_rotation_rad=0.01)).graph
    accurate = household_graph(400, seed=7, noise=GraphNoise(loop_translation_m=0.001)).graph
    for name in ("T_world_node", "T_from_to", "information", "edge_from", "edge_to", "is_loop"):
        np.testing.assert_array_equal(getattr(same, name), getattr(default, name))
    odometry = ~default.is_loop
    np.testing.assert_array_equal(accurate.T_world_node, default.T_world_node)
    np.testing.assert_array_equal(accurate.T_from_to[odometry], default.T_from_to[odometry])
    assert not np.allclose(accurate.T_from_to[~odometry], default.T_from_to[~odometry])


@pytest.mark.parametrize("dim", [2, 3])
def test_odometry_bias_is_systematic_and_absent_from_the_information(dim: int) -> None:
    unbiased = GraphNoise(translation_m=1e-6, rotation_rad=1e-7)
    biased = GraphNoise(translation_m=1e-6, rotation_rad=1e-7, odometry_scale_bias=0.02, odometry_yaw_bias_rad=0.001)
    reference = household_graph(300, dim=dim, seed=2, noise=unbiased)
    problem = household_graph(300, dim=dim, seed=2, noise=biased)
    graph, odometry = problem.graph, ~problem.graph.is_loop
    d = dim
    step_true = np.linalg.norm(reference.graph.T_from_to[odometry][:, :d, d], axis=1)
    step_biased = np.linalg.norm(graph.T_from_to[odometry][:, :d, d], axis=1)
    np.testing.assert_allclose(step_biased / step_true, 1.02, atol=1e-4)
    yaw_error = _residual_xi(problem)[:, -1]
    np.testing.assert_allclose(yaw_error[odometry], 0.001, atol=1e-5)
    np.testing.assert_allclose(yaw_error[~odometry], 0.0, atol=1e-5)  # loop closures carry no bias
    np.testing.assert_array_equal(graph.information, reference.graph.information)


@pytest.mark.parametrize(("field", "value"), [("loop_translation_m", 0.0), ("loop_rotation_rad", -1e-3),
                                              ("translation_m", 0.0), ("odometry_scale_bias", -1.0)])
def test_invalid_noise_is_a_config_error_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        GraphNoise(**{field: value})


def test_cli_writes_loop_information_of_the_loop_sigmas(tmp_path: Path) -> None:
    path = tmp_path / "graph.g2o"
    assert main(["graph", "household", "-n", "300", "--seed", "4", "-o", str(path), "--loop-sigma-t", "0.001",
                 "--loop-sigma-r", "0.0002", "--odometry-yaw-bias", "1e-4"]) == 0
    graph = read_g2o(path)
    assert graph.is_loop.any()
    np.testing.assert_allclose(graph.information[graph.is_loop][:, 0, 0], 1e6, rtol=1e-6)
    np.testing.assert_allclose(graph.information[graph.is_loop][:, 5, 5], 0.0002**-2.0, rtol=1e-6)
    np.testing.assert_allclose(graph.information[~graph.is_loop][:, 0, 0], 0.05**-2.0, rtol=1e-6)


def test_cli_rejects_a_non_positive_loop_sigma_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["graph", "household", "-n", "100", "-o", str(tmp_path / "g.g2o"), "--loop-sigma-t", "0"]) == 1
    assert "--loop-sigma-t" in capsys.readouterr().err
