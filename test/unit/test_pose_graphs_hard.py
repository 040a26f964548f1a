"""The hard synthetic pose graphs of issue 9: city (10k poses from odometry), anisotropic and
indefinite garage, tiny graphs. Sizes, determinism, noise structure."""

from __future__ import annotations

import numpy as np
import pytest

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.sim.pose_graphs import (
    GraphNoise, SyntheticPoseGraph, city_graph, garage_graph, make_indefinite, tiny_graph,
)
from mp_slam_ros.solvers.pgo import PoseGraphProblem

_ARRAYS = ("node_ids", "T_world_node", "edge_from", "edge_to", "T_from_to", "information", "is_loop")


def _assert_identical(a: SyntheticPoseGraph, b: SyntheticPoseGraph) -> None:
    for name in _ARRAYS:
        np.testing.assert_array_equal(getattr(a.graph, name), getattr(b.graph, name), err_msg=name)
    np.testing.assert_array_equal(a.T_world_node_true, b.T_world_node_true)


@pytest.mark.parametrize("make", [
    lambda seed: city_graph(2000, seed=seed),
    lambda seed: garage_graph(400, seed=seed, indefinite_fraction=0.05),
    lambda seed: tiny_graph(30, dim=3, seed=seed),
])
def test_generators_are_deterministic_in_their_seed(make) -> None:  # type: ignore[no-untyped-def]
    _assert_identical(make(3), make(3))
    assert not np.array_equal(make(3).graph.T_from_to, make(4).graph.T_from_to)


def test_city_is_a_10k_street_grid_from_dead_reckoning_like_city10000() -> None:
    problem = city_graph(10000, seed=0)
    graph = problem.graph
    assert (graph.num_nodes, graph.dim) == (10000, 2)
    assert graph.is_loop.sum() > 5000  # a revisit closes a loop at nearly every street position
    xy = problem.T_world_node_true[:, :2, 2]
    on_street = np.any(np.abs(np.round(xy / 10.0) * 10.0 - xy) < 1e-9, axis=1)
    assert on_street.all() and np.abs(xy).max() <= 50.0
    chi2_start = PoseGraphProblem(graph).chi2(graph.T_world_node)
    assert 1e8 <= chi2_start <= 1e9  # the public city10000 starts at 7.2e8
    T_dead_reckoning = graph.T_world_node[:-1] @ graph.T_from_to[: graph.num_nodes - 1]
    np.testing.assert_allclose(T_dead_reckoning, graph.T_world_node[1:], atol=1e-6)


def test_garage_is_multi_level_with_strongly_anisotropic_information() -> None:
    problem = garage_graph(1600, seed=0)
    graph = problem.graph
    assert (graph.num_nodes, graph.dim) == (1600, 3) and graph.is_loop.sum() > 500
    heights = np.unique(np.round(problem.T_world_node_true[:, 2, 3], 6))
    assert {0.0, 3.0, 6.0, 9.0} <= set(heights.tolist())  # four decks, ramps in between
    diagonal = np.diagonal(graph.information, axis1=1, axis2=2)
    translation, rotation = diagonal[:, :3], diagonal[:, 3:]
    rotation_vs_translation = rotation / translation.min(axis=1)[:, None]  # 1e4 to 1e6 x
    assert rotation_vs_translation.min() >= 1e4 * 0.999 and rotation_vs_translation.max() <= 1e6 * 1.001
    assert (translation.max(axis=1) / translation.min(axis=1)).min() >= 100.0 * 0.999  # per-axis ratios
    assert (rotation.max(axis=1) / rotation.min(axis=1)).min() >= 100.0 * 0.999
    assert np.linalg.eigvalsh(graph.information)[:, 0].min() > 0.0


def test_indefinite_option_breaks_a_fraction_of_the_edges_and_nothing_else() -> None:
    plain = garage_graph(1600, seed=1).graph
    problem = garage_graph(1600, seed=1, indefinite_fraction=0.02)
    eigenvalues = np.linalg.eigvalsh(problem.graph.information)
    broken = eigenvalues[:, 0] < 0.0
    assert 10 <= broken.sum() <= 60 and problem.name.endswith("-indefinite")
    np.testing.assert_allclose(eigenvalues[broken, 0], -0.002 * eigenvalues[broken, -1], rtol=1e-6)
    np.testing.assert_array_equal(problem.graph.information[~broken], plain.information[~broken])
    np.testing.assert_array_equal(problem.graph.T_from_to, plain.T_from_to)
    np.testing.assert_allclose(problem.graph.information, np.swapaxes(problem.graph.information, 1, 2), rtol=0, atol=0)


@pytest.mark.parametrize(("fraction", "ratio"), [(-0.1, 0.01), (1.5, 0.01), (0.1, 0.0)])
def test_make_indefinite_rejects_bad_options(fraction: float, ratio: float) -> None:
    with pytest.raises(ConfigError):
        make_indefinite(np.tile(np.eye(3), (4, 1, 1)), fraction, np.random.default_rng(0), ratio)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("num_poses", [9, 100])
def test_tiny_graphs_have_loops_and_start_from_odometry(num_poses: int, dim: int) -> None:
    graph = tiny_graph(num_poses, dim=dim, seed=0).graph
    assert (graph.num_nodes, graph.dim) == (num_poses, dim)
    assert graph.is_loop.sum() >= 1
    assert PoseGraphProblem(graph).chi2(graph.T_world_node) > 1.0  # the loops disagree with odometry


def test_axis_scale_makes_per_coordinate_sigmas() -> None:
    noise = GraphNoise(translation_m=0.1, rotation_rad=0.01, axis_scale=(1.0, 0.5, 2.0))
    np.testing.assert_allclose(noise.sigmas(3, loop=False), [0.1, 0.05, 0.02])
    with pytest.raises(ConfigError, match="noise.axis_scale"):
        noise.sigmas(6, loop=False)
    with pytest.raises(ConfigError, match="noise.axis_scale"):
        GraphNoise(axis_scale=(1.0, 0.0, 1.0))
