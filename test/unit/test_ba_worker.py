"""BAWorker: a finished window solve is announced (so a node can publish it between frames) and
counts as work until it is taken."""

from __future__ import annotations

import threading

import pytest

from mp_slam_ros.pipelines.ba_worker import BAWorker


def test_a_finished_solve_is_announced_and_pending_until_taken() -> None:
    release, announced = threading.Event(), threading.Event()
    worker = BAWorker(lambda job: (release.wait(5.0), job)[1], on_finished=announced.set)
    try:
        assert worker.idle
        worker.submit("window 1")  # type: ignore[arg-type]  (the worker only hands jobs to solve)
        assert not worker.idle  # queued or running
        release.set()
        assert announced.wait(5.0)
        assert not worker.idle  # finished, not yet applied
        assert worker.take() == ["window 1"]
        assert worker.idle
    finally:
        worker.close()


def test_a_failed_solve_is_announced_and_raised_by_take() -> None:
    def fail(job: object) -> object:
        raise RuntimeError(f"cannot solve {job}")

    announced = threading.Event()
    worker = BAWorker(fail, on_finished=announced.set)  # type: ignore[arg-type]
    try:
        worker.submit("window 2")  # type: ignore[arg-type]
        assert announced.wait(5.0)
        assert not worker.idle
        with pytest.raises(RuntimeError, match="cannot solve window 2"):
            worker.take()
        assert worker.idle
    finally:
        worker.close()
