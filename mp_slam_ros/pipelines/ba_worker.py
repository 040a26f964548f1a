"""Runs window bundle adjustments in a background thread so tracking never waits for them.

Only the newest submitted window is solved (a window submitted while another is queued replaces
it); finished solutions are collected with :meth:`BAWorker.take`, and ``on_finished`` (if given)
is called from the worker thread each time one is ready, so an owner that waits for frames can
apply it (and publish its statistics) without waiting for the next frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mp_slam_ros.pipelines.window import WindowProblem, WindowSolution


class BAWorker:
    """One daemon thread calling ``solve(job)`` on the latest submitted job."""

    def __init__(self, solve: Callable[[WindowProblem], WindowSolution], on_finished: Callable[[], None] | None = None) -> None:
        self._solve = solve
        self._on_finished = on_finished
        self._condition = threading.Condition()
        self._pending: WindowProblem | None = None
        self._finished: list[WindowSolution] = []
        self._error: BaseException | None = None
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="vo-ba", daemon=True)
        self._thread.start()

    def submit(self, job: WindowProblem) -> None:
        """Queue ``job`` (replacing a queued, not yet started one)."""
        with self._condition:
            self._pending = job
            self._condition.notify()

    def take(self) -> list[WindowSolution]:
        """Solutions finished since the last call (oldest first); re-raises a solver exception."""
        with self._condition:
            error, self._error = self._error, None
            finished, self._finished = self._finished, []
        if error is not None:
            raise error
        return finished

    @property
    def idle(self) -> bool:
        """Nothing queued, running, or finished and not yet taken."""
        with self._condition:
            return self._pending is None and not self._busy and not self._finished and self._error is None

    def wait_idle(self) -> None:
        """Block until nothing is queued or running."""
        with self._condition:
            self._condition.wait_for(lambda: self._pending is None and not self._busy)

    def close(self) -> None:
        """Stop the thread (a running solve finishes first)."""
        with self._condition:
            self._stop = True
            self._condition.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._stop or self._pending is not None)
                if self._stop:
                    return
                job, self._pending, self._busy = self._pending, None, True
            try:
                solution = self._solve(job)
            except BaseException as error:  # handed to the tracking thread by take()
                with self._condition:
                    self._error = error
                    self._busy = False
                    self._condition.notify_all()
            else:
                with self._condition:
                    self._finished.append(solution)
                    self._busy = False
                    self._condition.notify_all()
            if self._on_finished is not None:
                self._on_finished()
