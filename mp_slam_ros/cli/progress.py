"""A tqdm progress bar as the ``progress(done, total)`` callback the offline runners take."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def frame_progress(desc: str, disable: bool) -> Iterator[Callable[[int, int], None]]:
    """Yield ``progress(done, total)`` drawing a frame counter on stderr; closed on exit."""
    bar = tqdm(unit="frame", desc=desc, disable=disable)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()
