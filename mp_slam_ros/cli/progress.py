"""A tqdm progress bar as the ``progress(done, total)`` callback the long-running commands take."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def frame_progress(desc: str, disable: bool) -> Iterator[Callable[[int, int], None]]:
    """Yield ``progress(done, total)`` drawing a frame counter on stderr; closed on exit.

    The bar appears on the first call only (a step with nothing to do, e.g. a cached
    sequence, prints nothing).
    """
    bars: list[tqdm] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="frame", desc=desc, disable=disable))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()
