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
current training step. Exceptions raised while loading (a bad label file, say) are re-raised in
the training thread, with their original type and message.
"""

from __future__ import annotations

import queue
import threading

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
    ):
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(dataset) == 0:
            raise ValueError(f"dataset {getattr(dataset, 'name', dataset)!r} is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.transform = transform if transform is not None else Normalize()
        self.shuffle, self.seed, self.drop_last, self.prefetch = shuffle, seed, drop_last, prefetch

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
        order = self.order(epoch)
        indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]
        images, labels = [], []
        for i in indices:
            image, label = self.dataset[int(i)]
            rng = np.random.default_rng([self.seed, epoch, int(i), 1])
            image, label = self.transform(image, label, rng)
            images.append(image)
            labels.append(label)
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(
                f"a batch holds images of different sizes {sorted(shapes)}; use a transform "
                "that crops or resizes to one size, or batch_size=1"
            )
        return np.stack(images), np.stack(labels).astype(np.int64, copy=False)

    def epoch(self, epoch: int = 0, start_batch: int = 0):
        """Iterate over the batches of ``epoch`` from ``start_batch``, loading ahead in a thread."""
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
