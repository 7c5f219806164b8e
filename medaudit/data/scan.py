"""Decoding every image of a split once for its scan: content hashes, pHashes, thumbnails, sizes, modes.

:class:`ScanPlan` holds one split's scan in progress (persistent hash-cache hits filled in, the
misses listed); the misses are decoded by :func:`scan_files` (worker processes when there are
many) or recorded by an inference pass that decodes them anyway
(:meth:`medaudit.data.base.Split.fused_scan_plan`). What is kept of each image is
:func:`scan_decoded`'s.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from medaudit.data.hashcache import HashCache
from medaudit.data.images import THUMBNAIL_SIDE, perceptual_signature, pixel_hash
from medaudit.errors import MedauditError

if TYPE_CHECKING:
    from medaudit.data.base import Split


class ScanPlan:
    """One split's scan in progress: hash-cache hits filled in, the misses to decode listed.

    Rows are filled by :meth:`take_cached` (a hit) or :meth:`record` (a decode's result, from
    the scan's own workers or from an inference pass that decoded the file anyway).
    """

    def __init__(self, n: int, cache: HashCache | None) -> None:
        self.cache = cache
        self.misses: list[int] = []
        self.n_unknown = 0  # misses whose path the hash cache has never seen
        self.done = np.zeros(n, dtype=bool)
        self.hashes: list[str] = [""] * n
        self.phashes = np.zeros(n, dtype=np.uint64)
        self.thumbs = np.zeros((n, THUMBNAIL_SIDE * THUMBNAIL_SIDE), dtype=np.uint8)
        self.sizes: Counter = Counter()
        self.modes: Counter = Counter()
        self._errors: dict[int, str] = {}

    def take_cached(self, i: int) -> bool:
        """Fill row ``i`` from the hash cache; False when its entry is not trusted (a miss)."""
        cache = self.cache
        if not cache.lookup(i):
            return False
        self.hashes[i] = cache.hex(i)
        self.phashes[i], self.thumbs[i] = cache.phash[i], cache.thumbs[i]
        self.sizes[tuple(int(v) for v in cache.size[i])] += 1
        self.modes[str(cache.mode[i])] += 1
        self.done[i] = True
        return True

    def record(self, i: int, result) -> None:
        """Row ``i`` from :func:`scan_decoded`'s result (or the decode error's message)."""
        if self.done[i]:
            return
        self.done[i] = True
        if isinstance(result, str):
            self._errors[i] = result
            return
        self.hashes[i], self.phashes[i], thumb, size, original = result
        self.thumbs[i] = thumb
        self.sizes[size] += 1
        self.modes[original] += 1
        if self.cache is not None:
            self.cache.store(i, self.hashes[i], int(self.phashes[i]), thumb, size, original)

    def result(self) -> dict:
        """The split's ``_scan`` dict (errors in sample order)."""
        return {"hashes": self.hashes, "phashes": self.phashes, "thumbs": self.thumbs, "sizes": self.sizes,
                "modes": self.modes, "errors": [self._errors[i] for i in sorted(self._errors)]}


def scan_decoded(im: Image.Image, original: str) -> tuple[str, int, np.ndarray, tuple[int, int], str]:
    """What the scan keeps of one decoded image: (pixel sha hex, pHash, thumbnail (256,) uint8, (w, h),
    original mode)."""
    ph, thumb = perceptual_signature(im)
    return pixel_hash(im), ph, thumb.ravel(), im.size, original


def scan_workers(n: int) -> int:
    """Worker processes for decoding ``n`` image files (scans here, DataLoaders in
    :func:`medaudit.models.preprocess.iter_batches`): none for a few hundred, else up to 4."""
    return min(4, os.cpu_count() or 1) if n > 256 else 0


_WORKER_SPLIT: Split | None = None


def _scan_init(split: Split) -> None:
    global _WORKER_SPLIT
    _WORKER_SPLIT = split
    # A forked worker inherits the command's SIGTERM-as-Ctrl-C handler (cli._common); it must die on the
    # pool's SIGTERM instead (a worker that survived it once kept a 50k-image report waiting in join
    # forever), and leave Ctrl-C to the parent, which stops the pool.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _scan_one(i: int, split: Split | None = None):
    """(pixel sha hex, pHash, thumbnail (256,) uint8, (w, h), original mode) of file ``i``, or the
    decode error's message."""
    split = split if split is not None else _WORKER_SPLIT
    try:
        im, original = split._decode(i)
    except MedauditError as exc:
        return str(exc)
    return scan_decoded(im, original)


def scan_files(split: Split, indices: list[int], workers: int | None = None):
    """Yield :func:`_scan_one` of each index in order; in worker processes when there are many."""
    workers = scan_workers(len(indices)) if workers is None else workers
    if workers <= 1 or multiprocessing.current_process().daemon:  # a daemon (a pool's worker) may not fork
        for i in indices:
            yield _scan_one(i, split)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ctx.Pool(workers, initializer=_scan_init, initargs=(split,))
    try:
        yield from pool.imap(_scan_one, indices, chunksize=64)
        pool.close()  # done: the workers leave on their own (Pool.__exit__ would terminate() them)
    except BaseException:  # an error, Ctrl-C or a consumer that stopped early (GeneratorExit)
        pool.terminate()
        raise
    finally:
        pool.join()
