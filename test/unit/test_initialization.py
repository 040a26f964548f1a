"""Initial poses from the measurements: spanning-tree odometry and chordal relaxation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mp_slam_ros.backend.initialization import chordal_initialization, odometry_initialization
from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import ProblemError
from mp_slam_ros.geometry import lie
from mp_slam_ros.sim.pose_graphs import GraphNoise, SyntheticPoseGraph, grid_graph, household_graph, sphere_graph
from mp_slam_ros.solvers.pgo import PoseGraphProblem

_NOISELESS = GraphNoise(translation_m=1e-12, rotation_rad=1e-12)
_INITIALIZERS = [odometry_initialization, chordal_initialization]
_WORLDS: dict[str, Callable[[], SyntheticPoseGraph]] = {
    "household3d": lambda: household_graph(300, dim=3, seed=1, noise=_NOISELESS),
    "household2d": lambda: household_graph(300, dim=2, seed=1, noise=_NOISELESS),
    "sphere": lambda: sphere_graph(400, seed=2, noise=_NOISELESS),
    "grid2d": lambda: grid_graph(300, dim=2, seed=3, noise=_NOISELESS),
    "grid3d": lambda: grid_graph(300, dim=3, seed=3, noise=_NOISELESS),
}


def _inverse(T: np.ndarray) -> np.ndarray:
    return lie.se3_inverse(T) if T.shape[-1] == 4 else lie.se2_inverse(T)


def _scrambled(graph: PoseGraph, rng: np.random.Generator) -> PoseGraph:
    """The graph with random initial poses and a random anchor pose (what is kept is the anchor)."""
    k = graph.tangent_dim
    exp = lie.se3_exp if k == 6 else lie.se2_exp
    return graph.with_poses(exp(rng.standard_normal((graph.num_nodes, k))))


@pytest.mark.parametrize("initialize", _INITIALIZERS, ids=["odometry", "chordal"])
@pytest.mark.parametrize("world", list(_WORLDS))
def test_noiseless_graph_is_recovered_up_to_the_gauge(world: str, initialize: Callable[[PoseGraph], np.ndarray]) -> None:
    problem = _WORLDS[world]()
    graph = _scrambled(problem.graph, np.random.default_rng(7))
    graph.fixed_ids = graph.node_ids[[17]]  # the anchor: its pose is kept, every other one estimated
    T_world_node = initialize(graph)
    np.testing.assert_array_equal(T_world_node[17], graph.T_world_node[17])
    # Same poses relative to the anchor as the truth: equal up to the gauge (one rigid transform).
    estimated = _inverse(T_world_node[17]) @ T_world_node
    truth = _inverse(problem.T_world_node_true[17]) @ problem.T_world_node_true
    np.testing.assert_allclose(estimated, truth, atol=1e-8)
    graph.with_poses(T_world_node).validate()  # rigid transforms: rotations projected onto SO(d)


def test_chordal_is_much_closer_to_the_optimum_than_odometry_on_a_noisy_sphere() -> None:
    graph = sphere_graph(900, seed=5, noise=GraphNoise(rotation_rad=0.02)).graph
    problem = PoseGraphProblem(graph)
    chi2_odometry = problem.chi2(odometry_initialization(graph))
    chi2_chordal = problem.chi2(chordal_initialization(graph))
    # Measured: 1.8e7 vs 1.5e4; the optimum is 5.3e3 (1,769 edges).
    assert chi2_chordal < chi2_odometry / 100.0
    assert chi2_chordal < 3.0 * graph.num_edges * graph.tangent_dim


def test_odometry_initialization_roots_every_component_and_keeps_the_anchor() -> None:
    chain = household_graph(40, dim=2, seed=0, noise=_NOISELESS, loop_probability=0.0).graph
    keep = chain.edge_from != 19  # cut the chain between nodes 19 and 20: two components
    graph = PoseGraph(chain.node_ids, _scrambled(chain, np.random.default_rng(1)).T_world_node,
                      chain.edge_from[keep], chain.edge_to[keep], chain.T_from_to[keep], chain.information[keep],
                      fixed_ids=[5])
    T_world_node = odometry_initialization(graph)
    np.testing.assert_array_equal(T_world_node[[5, 20]], graph.T_world_node[[5, 20]])  # the two roots
    for start, node in ((5, 0), (5, 19), (20, 39)):
        np.testing.assert_allclose(_inverse(T_world_node[start]) @ T_world_node[node],
                                   _inverse(chain.T_world_node[start]) @ chain.T_world_node[node], atol=1e-9)
    with pytest.raises(ProblemError, match="disconnected"):
        chordal_initialization(graph)


def test_single_node_graph_keeps_its_pose() -> None:
    graph = PoseGraph([3], np.eye(4)[None], [], [], np.zeros((0, 4, 4)), np.zeros((0, 6, 6)))
    for initialize in _INITIALIZERS:
        np.testing.assert_array_equal(initialize(graph), graph.T_world_node)
