"""Batches from a dataset: shuffled with a seed, transformed, prefetched in a background thread.

    loader = DataLoader(dataset, batch_size=8, transform=train_transform(64), shuffle=True, seed=0)
    for epoch in range(epochs):
        for images, labels in loader.epoch(epoch):   # (N, 3, H, W) float32, (N, H, W) int64
            ...

Determinism. The order of epoch e is a permutation drawn from ``default_rng([seed, e])``, and
sample i of epoch e is transformed with its own generator ``default_rng([seed, e, i, 1])``. So
batch b of epoch e is the same whatever happened before it: a run resumed in the middle of an
epoch (``loader.epoch(e, start_batch=b)``) sees exactly the batches the uninterrupted run saw.

Why a thread and not worker processes: Numba's parallel kernels run on an OpenMP (or TBB)
thread pool, and ``fork()`` after such a pool has started leaves the child with a lock held by a
thread that no longer exists, so forked workers hang or die. A thread shares the process; NumPy
releases the GIL in its array loops, so decoding and augmenting the next batch overlaps with the
current training step. The samples of one batch are decoded and augmented by a small pool of
threads (``workers``, default 2): PNG decoding (zlib) and the NumPy resampling release the GIL,
so on a 2-core machine a batch of 360x480 CamVid frames loads in about half the time.
``load_seconds`` adds up the time spent producing batches (in the background); the trainer
compares it with the time the training loop actually waited (data time against compute
time). Exceptions raised while loading (a bad label file, say) are re-raised in
the training thread, with their original type and message.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minisegnet.data.transforms import Normalize

_DONE = object()


class DataLoader:
    def __init__(
        self,
        dataset,
        batch_size: int = 8,
        transform=None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        prefetch: int = 2,
        workers: int = 2,
    ):
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(dataset) == 0:
            raise ValueError(f"dataset {getattr(dataset, 'name', dataset)!r} is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.transform = transform if transform is not None else Normalize()
        self.shuffle, self.seed, self.drop_last, self.prefetch = shuffle, seed, drop_last, prefetch
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self.load_seconds = 0.0  # time spent producing batches, summed over the loader's life
        self._pool = None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch`` in the order they are served."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def load_batch(self, epoch: int, batch: int):
        """Batch number ``batch`` of ``epoch``: (images (N, C, H, W) float32, labels (N, H, W))."""
        t0 = time.perf_counter()
        order = self.order(epoch)
        indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]

        def sample(i):
            image, label = self.dataset[int(i)]
            rng = np.random.default_rng([self.seed, epoch, int(i), 1])  # per sample: no race
            return self.transform(image, label, rng)

        if self.workers > 1 and len(indices) > 1:
            if self._pool is not None:  # the epoch's pool (epoch() opens and closes it)
                pairs = list(self._pool.map(sample, indices))
            else:
                with ThreadPoolExecutor(self.workers, thread_name_prefix="minisegnet-load") as pool:
                    pairs = list(pool.map(sample, indices))
        else:
            pairs = [sample(i) for i in indices]
        images = [p[0] for p in pairs]
        labels = [p[1] for p in pairs]
        self.load_seconds += time.perf_counter() - t0
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(
                f"a batch holds images of different sizes {sorted(shapes)}; use a transform "
                "that crops or resizes to one size, or batch_size=1"
            )
        return np.stack(images), np.stack(labels).astype(np.int64, copy=False)

    def epoch(self, epoch: int = 0, start_batch: int = 0):
        """Iterate over the batches of ``epoch`` from ``start_batch``, loading ahead in a thread."""
        if self.workers > 1 and self.batch_size > 1:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="minisegnet-load")
        try:
            yield from self._epoch(epoch, start_batch)
        finally:  # no thread outlives the epoch, even when the loop is abandoned
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _epoch(self, epoch: int, start_batch: int):
        batches = range(start_batch, len(self))
        if self.prefetch <= 0:
            for b in batches:
                yield self.load_batch(epoch, b)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce():
            try:
                for b in batches:
                    if stop.is_set():
                        return
                    item = self.load_batch(epoch, b)
                    while not stop.is_set():
                        try:
                            q.put(("batch", item), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                q.put(("done", None))
            except BaseException as error:  # handed to the consumer, raised there
                q.put(("error", error))

        thread = threading.Thread(target=produce, name="minisegnet-loader", daemon=True)
        thread.start()
        try:
            while True:
                kind, item = q.get()
                if kind == "done":
                    return
                if kind == "error":
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # drain so a blocked put() can see the stop flag
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()

    def __iter__(self):
        return self.epoch(0)
