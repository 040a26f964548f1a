"""Shared pytest configuration: GPU skipping and sample data for the ROS message tests.

Nothing here imports rclpy or message types at collection time, so the core tests run (and
``pytest -m "not ros"`` works) without ROS.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


@functools.cache
def cuda_device_count() -> int:
    """Number of CUDA devices CuPy can use (0 without CuPy or a driver)."""
    try:
        import cupy
    except ImportError:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA device is usable."""
    if cuda_device_count():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device through CuPy (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def assert_same(actual: Any, expected: Any, path: str = "value") -> None:
    """Assert two values (dataclasses, arrays, scalars) are identical; NaN equals NaN, dtypes match."""
    if dataclasses.is_dataclass(expected):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        for field in dataclasses.fields(expected):
            assert_same(getattr(actual, field.name), getattr(expected, field.name), f"{path}.{field.name}")
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{path}: {type(actual)} is not an ndarray"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        np.testing.assert_array_equal(actual, expected, err_msg=path, strict=True)
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.fixture(name="assert_same")
def assert_same_fixture() -> Callable[..., None]:
    """:func:`assert_same` for tests (exact equality of message-side dataclasses)."""
    return assert_same


def random_pose7(rng: np.random.Generator, count: int) -> np.ndarray:
    """``(count, 7)`` random poses [x y z qx qy qz qw] with unit quaternions."""
    quat = rng.normal(size=(count, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    return np.concatenate([rng.uniform(-10.0, 10.0, size=(count, 3)), quat], axis=1)


@pytest.fixture
def sample_camera() -> Any:
    """A 640x480 RGB-D camera model with plumb-bob distortion."""
    from mp_slam_ros.ros.conversions import CameraModel

    return CameraModel(
        frame_id="camera_color_optical_frame",
        width=640,
        height=480,
        camera_matrix=np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]]),
        distortion_model="plumb_bob",
        distortion_coeffs=np.array([0.01, -0.02, 0.001, 0.0005, 0.0]),
        rectification=np.eye(3),
        projection_matrix=np.array([[525.0, 0.0, 319.5, 0.0], [0.0, 525.0, 239.5, 0.0], [0.0, 0.0, 1.0, 0.0]]),
    )


@pytest.fixture
def sample_keyframe(sample_camera: Any) -> Callable[..., Any]:
    """Factory of random keyframes: ``sample_keyframe(n_keypoints=2000, seed=0)``."""
    from mp_slam_ros.ros.messages import KeyframeArrays

    def make(n_keypoints: int = 2000, seed: int = 0, descriptor_size_bytes: int = 32) -> KeyframeArrays:
        rng = np.random.default_rng(seed)
        points_cam = rng.uniform([-2.0, -1.5, 0.3], [2.0, 1.5, 6.0], size=(n_keypoints, 3)).astype(np.float32)
        points_cam[rng.random(n_keypoints) < 0.1] = np.nan  # keypoints without depth
        covariance = rng.normal(size=(6, 6))
        return KeyframeArrays(
            keyframe_id=int(rng.integers(0, 2**63)),
            stamp_ns=1_700_000_000_123_456_789 + seed,
            frame_id="odom",
            pose_odom_cam=random_pose7(rng, 1)[0],
            covariance_odom_cam=covariance @ covariance.T,
            camera=sample_camera,
            keypoints_px=(rng.random((n_keypoints, 2)) * [640.0, 480.0]).astype(np.float32),
            descriptors=rng.integers(0, 256, size=(n_keypoints, descriptor_size_bytes), dtype=np.uint8),
            points_cam=points_cam,
        )

    return make


@pytest.fixture
def sample_pose_graph() -> Callable[..., Any]:
    """Factory of random pose graphs: a chain of odometry edges plus random loop edges."""
    from mp_slam_interfaces.msg import PoseGraph

    from mp_slam_ros.ros.messages import PoseGraphArrays

    def make(n_nodes: int = 500, n_loops: int = 200, seed: int = 0) -> PoseGraphArrays:
        rng = np.random.default_rng(seed)
        node_ids = np.sort(rng.choice(2**40, size=n_nodes, replace=False)).astype(np.uint64)
        loops = rng.integers(0, n_nodes, size=(n_loops, 2))
        edge_from = np.concatenate([node_ids[:-1], node_ids[loops[:, 0]]])
        edge_to = np.concatenate([node_ids[1:], node_ids[loops[:, 1]]])
        n_edges = len(edge_from)
        sqrt_info = rng.normal(size=(n_edges, 6, 6))
        kinds = np.full(n_edges, PoseGraph.EDGE_KIND_LOOP, dtype=np.uint8)
        kinds[: n_nodes - 1] = PoseGraph.EDGE_KIND_ODOMETRY
        return PoseGraphArrays(
            frame_id="map",
            stamp_ns=1_700_000_100_000_000_000 + seed,
            node_ids=node_ids,
            node_poses=random_pose7(rng, n_nodes),
            edge_from_ids=edge_from,
            edge_to_ids=edge_to,
            edge_relative_poses=random_pose7(rng, n_edges),
            edge_information=sqrt_info @ sqrt_info.transpose(0, 2, 1),
            edge_kinds=kinds,
        )

    return make


@pytest.fixture
def sample_solver_stats() -> Any:
    """Statistics of a mixed-precision PGO solve that escalated once to fp32."""
    from mp_slam_ros.precision import Precision, ProblemKind
    from mp_slam_ros.ros.messages import SolverStatsRecord
    from mp_slam_ros.solvers.summary import Termination

    return SolverStatsRecord(
        stamp_ns=1_700_000_200_000_000_001,
        frame_id="map",
        problem_kind=ProblemKind.PGO,
        precision_requested=Precision.MIXED,
        precision_used=Precision.FP32,
        precision_escalations=1,
        linear_solver="cgnr+ichol",
        rows=6 * 1699,
        cols=6 * 500,
        nnz=6 * 12 * 1699,
        outer_iterations=7,
        inner_iterations=431,
        initial_cost=1234.5678,
        final_cost=0.0123456789,
        linear_solver_residual=3.2e-7,
        jacobian_time_s=0.0125,
        linear_solve_time_s=0.0811,
        update_time_s=0.004,
        total_time_s=0.1042,
        termination=Termination.CONVERGED_FUNCTION,
        termination_message="relative cost decrease 4.1e-11 < 1e-10",
    )
