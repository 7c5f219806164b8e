"""A persistent cache of per-image content hashes, so an unchanged folder is decoded only once.

Every ``report`` and ``inspect`` needs, for each image of each split, the sha256 of its decoded
pixels (fingerprints, duplicates), its perceptual hash and 16x16 thumbnail (near-duplicates),
its size and its original mode (:meth:`medaudit.data.base.Split._ensure_scan`). Decoding 100k
images for that on every run costs more than the rest of the audit, so the results are kept
in one file per split, and a later run decodes only files whose entry it cannot trust.

What it trusts (the way git's index does)
-----------------------------------------
An entry is used for a file when all of these match what ``os.stat`` says now: the absolute
path, the size, ``st_mtime_ns``, ``st_ctime_ns`` and the inode. Rewriting a file changes its
mtime and ctime (``touch -d``/``cp -p`` can set mtime back, not ctime); replacing it changes
the inode. Not trusted:

* **racy entries**: a file whose mtime is within :data:`RACY_NS` (2 s, a coarse file-system
  timestamp tick) of the moment the cache was written. It may have been changed again in the
  same tick with the same size, which no stat field would show; such files are decoded again
  (and trusted once the cache is written later);
* a cache written by another cache format, decoder (:data:`DECODER_VERSION`) or Pillow version
  (JPEG decoding can differ between libjpeg builds): the whole file is ignored, quietly;
* a damaged cache file (unreadable, wrong arrays, checksum mismatch): ignored with a
  :class:`~medaudit.errors.MedauditWarning` and rewritten;
* everything, with ``--rehash`` (``report``, ``data inspect``): every file is decoded again and
  the cache rewritten (:func:`rehash`).

What it cannot see: a file changed in place by a tool that restores mtime, ctime, size and
inode together (only possible with root access or a file-system image edited offline). The
cache is a local file written by medaudit as the current user; it is checked for structure and
a checksum (against damage), not signed, so someone who can write the cache folder can make
medaudit report other hashes for unchanged files, as they could edit the data itself.

Where: ``$MEDAUDIT_CACHE/hashes`` (default ``~/.cache/medaudit/hashes``, next to the
predictions cache, :func:`cache_root`), one ``.npz`` per (split name, folder, decoder) named by a
hash of those. Writes are atomic (:func:`medaudit.fileio.atomic_path`); a cache folder that
cannot be written only warns. Only splits decoded by the plain image decoder use the cache
(DICOM and corrupted views decode differently and say so through ``Split._hash_cache_tag``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import PIL

from medaudit.errors import MedauditWarning
from medaudit.fileio import atomic_path

#: Bump when the cached values' meaning changes (the scan's hash, pHash or thumbnail rules).
CACHE_FORMAT = 1
#: Bump when :func:`medaudit.data.images.decode_image` changes the pixels it returns.
DECODER_VERSION = 1
#: Entries whose file mtime is this close to (or after) the cache's write time are not trusted.
RACY_NS = 2_000_000_000
_THUMB = 256
_MODE_LEN = 16
_KEYS = ("paths", "stat", "sha", "phash", "thumbs", "size", "mode", "meta", "checksum")

_rehash: contextvars.ContextVar[bool] = contextvars.ContextVar("medaudit_rehash", default=False)


def cache_root() -> Path:
    """``$MEDAUDIT_CACHE``, else ``$XDG_CACHE_HOME/medaudit`` (``~/.cache/medaudit``)."""
    return Path(os.environ.get("MEDAUDIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "medaudit"))


def default_hash_cache_dir() -> Path:
    """``cache_root() / "hashes"``."""
    return cache_root() / "hashes"


@contextlib.contextmanager
def rehash(enabled: bool = True) -> Iterator[None]:
    """Within the block, distrust every cached entry (decode all files, rewrite the cache)."""
    token = _rehash.set(enabled)
    try:
        yield
    finally:
        _rehash.reset(token)


def rehash_requested() -> bool:
    """True inside :func:`rehash` (the CLI's ``--rehash``)."""
    return _rehash.get()


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}:".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class HashCache:
    """The cached scan results of one split's files (open with :meth:`open`).

    Call :meth:`lookup` for each file (it stats the file), :meth:`store` after decoding a miss,
    then :meth:`save` once.
    """

    def __init__(self, file: Path | None, paths: Sequence[str], meta: dict) -> None:
        self.file = file
        self.paths = [str(p) for p in paths]
        self._meta = meta
        self._index: dict[str, int] = {}
        self._known: frozenset[str] = frozenset()
        self._old: dict[str, np.ndarray] | None = None
        n = len(self.paths)
        self._stats: list[tuple[int, int, int, int] | None] = [None] * n
        self.stat = np.zeros((n, 4), dtype=np.int64)
        self.sha = np.zeros((n, 32), dtype=np.uint8)
        self.phash = np.zeros(n, dtype=np.uint64)
        self.thumbs = np.zeros((n, _THUMB), dtype=np.uint8)
        self.size = np.zeros((n, 2), dtype=np.int64)
        self.mode = np.zeros(n, dtype=f"<U{_MODE_LEN}")
        self.filled = np.zeros(n, dtype=bool)
        self.n_hits = 0

    @classmethod
    def open(cls, paths: Sequence[os.PathLike | str], *, split: str, tag: str,
             directory: Path | None = None) -> HashCache:
        """The cache for ``paths`` of split ``split`` decoded by ``tag`` (read if present and valid).

        Parameters
        ----------
        paths : sequence of path, length N
            The split's files (made absolute).
        split : str
        tag : str
            Names the decoder (e.g. ``"pixels"``); part of the cache file's key.
        directory : Path, optional
            Default :func:`default_hash_cache_dir`.
        """
        abspaths = [os.path.abspath(p) for p in paths]
        meta = {"format": CACHE_FORMAT, "decoder": DECODER_VERSION, "tag": tag, "pillow": PIL.__version__}
        folder = os.path.commonpath(abspaths) if abspaths else ""
        name = hashlib.sha256(json.dumps([split, folder, meta], sort_keys=True).encode()).hexdigest()[:32]
        cache = cls((directory or default_hash_cache_dir()) / f"{name}.npz", abspaths, meta)
        cache._read(trust=not rehash_requested())
        return cache

    def _read(self, trust: bool = True) -> None:
        """Read the file. Its paths are :meth:`knows`'s even when its entries are not trusted (``--rehash``,
        another decoder or Pillow): they say the folder was hashed here before."""
        if self.file is None or not self.file.is_file():
            return
        try:
            with np.load(self.file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            problem = _validate(arrays, self._meta)
        except Exception as exc:  # any damage: a zip/npy error, a member of the wrong kind
            arrays, problem = {}, f"cannot be read ({type(exc).__name__}: {exc})"
        paths = arrays.get("paths")
        if problem in (None, "stale") and isinstance(paths, np.ndarray) and paths.ndim == 1 and paths.dtype.kind == "U":
            self._known = frozenset(paths.tolist())
        if problem == "stale" or not trust:
            return
        if problem:
            warnings.warn(f"image hash cache {self.file} is unusable ({problem}); decoding the images again and "
                          "rewriting it", MedauditWarning, stacklevel=4)
            return
        self._old = arrays
        written = int(json.loads(bytes(arrays["meta"]).decode())["written_ns"])
        stat = arrays["stat"]
        trusted = stat[:, 1] < written - RACY_NS  # mtime older than the write by more than a tick
        self._index = {str(p): k for k, p in enumerate(arrays["paths"].tolist()) if trusted[k]}

    def lookup(self, i: int) -> bool:
        """Stat file ``i``; fill row ``i`` from the cache and return True when its entry is trusted."""
        st = self._stats[i] = _stat_key(self.paths[i])
        k = self._index.get(self.paths[i])
        if st is None or k is None or self._old is None or tuple(self._old["stat"][k].tolist()) != st:
            return False
        old = self._old
        self.stat[i] = st
        self.sha[i], self.phash[i], self.thumbs[i] = old["sha"][k], old["phash"][k], old["thumbs"][k]
        self.size[i], self.mode[i] = old["size"][k], old["mode"][k]
        self.filled[i] = True
        self.n_hits += 1
        return True

    def knows(self, i: int) -> bool:
        """Whether the cache holds an entry for file ``i``'s path at all, trusted or not (racy, changed)."""
        return self.paths[i] in self._known

    def store(self, i: int, sha_hex: str, phash: int, thumb: np.ndarray, size: tuple[int, int], mode: str) -> None:
        """Record the scan of file ``i`` (decoded after :meth:`lookup` stat'ed it)."""
        st = self._stats[i]
        if st is None or len(mode) > _MODE_LEN:
            return  # vanished since (or an odd mode): not cached, decoded again next time
        self.stat[i] = st
        self.sha[i] = np.frombuffer(bytes.fromhex(sha_hex), dtype=np.uint8)
        self.phash[i] = phash
        self.thumbs[i] = np.asarray(thumb, dtype=np.uint8).ravel()
        self.size[i], self.mode[i] = size, mode
        self.filled[i] = True

    def hex(self, i: int) -> str:
        """The content hash of row ``i`` as hex."""
        return self.sha[i].tobytes().hex()

    def save(self) -> None:
        """Write the filled rows (atomically) unless every file was a hit; a write failure only warns.

        Trusted entries of files outside this view (a subset of the split: a robustness sweep's
        sample) are kept, so hashing part of a folder does not make the rest unknown again.
        """
        if self.file is None or (self.n_hits == len(self.paths) and self._old is not None):
            return
        f = self.filled
        arrays = {"paths": np.asarray(self.paths, dtype=str)[f] if f.any() else np.zeros(0, dtype="<U1"),
                  "stat": self.stat[f], "sha": self.sha[f], "phash": self.phash[f], "thumbs": self.thumbs[f],
                  "size": self.size[f], "mode": self.mode[f]}
        if self._old is not None:
            own = set(self.paths)
            others = np.asarray(sorted(k for p, k in self._index.items() if p not in own), dtype=np.int64)
            if len(others):  # trusted at read, so still older than this write by more than a tick
                arrays = {k: np.concatenate([v, self._old[k][others]]) for k, v in arrays.items()}
        meta = dict(self._meta, written_ns=time.time_ns(), n=int(f.sum()))
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        arrays["checksum"] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.file, suffix=".npz") as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        except OSError as exc:
            warnings.warn(f"could not write the image hash cache {self.file} ({exc.strerror or exc}); the next run "
                          "will decode the images again", MedauditWarning, stacklevel=3)


def _validate(arrays: dict[str, np.ndarray], expected: dict) -> str | None:
    """None when ``arrays`` is a well-formed cache of ``expected``'s decoder, ``"stale"`` when it is
    another format/decoder/Pillow's, else what is wrong."""
    if set(arrays) != set(_KEYS):
        return f"members {sorted(arrays)} instead of {sorted(_KEYS)}"
    for k in ("meta", "checksum"):
        if arrays[k].dtype != np.uint8 or arrays[k].ndim != 1:
            return f"member {k} is not a byte string"
    try:
        meta = json.loads(bytes(arrays["meta"]).decode())
    except ValueError:
        return "its header is not JSON"
    if not isinstance(meta, dict) or not isinstance(meta.get("written_ns"), int) or not isinstance(meta.get("n"), int):
        return "its header lacks the write time or the entry count"
    if any(meta.get(k) != v for k, v in expected.items()):
        return "stale"
    body = {k: v for k, v in arrays.items() if k != "checksum"}
    if bytes(arrays["checksum"]).decode(errors="replace") != _checksum(body):
        return "checksum mismatch: the file was changed or damaged"
    n = meta["n"]
    shapes = {"paths": ((n,), "U"), "stat": ((n, 4), "int64"), "sha": ((n, 32), "uint8"), "phash": ((n,), "uint64"),
              "thumbs": ((n, _THUMB), "uint8"), "size": ((n, 2), "int64"), "mode": ((n,), "U")}
    for k, (shape, dtype) in shapes.items():
        a = arrays[k]
        ok = a.dtype.kind == "U" if dtype == "U" else a.dtype == np.dtype(dtype)
        if a.shape != shape or not ok:
            return f"member {k} has shape {a.shape} and dtype {a.dtype}, expected {shape} of {dtype}"
    return None
