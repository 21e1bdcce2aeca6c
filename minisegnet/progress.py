"""Progress for output that is not a terminal: one line about every 30 seconds.

On a terminal the commands draw tqdm bars; into a file or a pipe (a job on a cluster, ``nohup``,
``| tee``) a bar is unreadable, and without lines nothing would be printed until an epoch
ends (7 minutes on CamVid). :class:`ProgressLines` prints instead::

    epoch 2/30  batch 14/45  3.1 img/s  loss 1.2345  ETA 2m40s (epoch)

The first line comes after the first ``interval`` seconds; then one per interval, and never
more than one per update. The ETA is (batches left) x (mean seconds per batch so far).
"""

from __future__ import annotations

import time

__all__ = ["ProgressLines", "format_duration"]


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m05s', 160 -> '2m40s', 7.4 -> '7s'."""
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class ProgressLines:
    """``update(done, images, loss=None)`` after each batch (``done`` batches of ``total``,
    ``images`` images so far); prints through ``log`` when ``interval`` seconds passed since
    the last line (or since the start). ``prefix``: e.g. 'epoch 2/30'."""

    def __init__(
        self, total: int, prefix: str = "", interval: float = 30.0, log=print, clock=None,
        start_done: int = 0,
    ):  # fmt: skip
        self.total, self.prefix, self.interval, self.log = total, prefix, interval, log
        self.clock = clock or time.monotonic
        self.start = self.last = self.clock()
        self.start_done = start_done  # batches done before this run of the loop (resume)

    def update(self, done: int, images: int, loss: float | None = None) -> str | None:
        now = self.clock()
        if now - self.last < self.interval:
            return None
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        ran = max(done - self.start_done, 1)
        eta = (self.total - done) * elapsed / ran
        parts = [self.prefix] if self.prefix else []
        parts.append(f"batch {done}/{self.total}")
        parts.append(f"{images / elapsed:.1f} img/s")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        parts.append(f"ETA {format_duration(eta)}")
        line = "  ".join(parts)
        self.log(line)
        return line
