"""Safe file handling: atomic writes, staging folders swept after a crash, checks before the work.

Atomic writes go to a temporary file (or folder) beside the target, renamed over it only when complete;
their names carry the writing process, so a later run can remove what a killed one left behind.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from medaudit.errors import MedauditError


def _read_umask() -> int:
    # Read once: os.umask() can only be read by setting it, and a file another thread creates
    # in between would get the temporary value.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _mode_for(path: Path) -> int:
    """An existing target keeps its mode; a new file gets what open() gives (0666 & ~umask),
    not mkstemp's 0600, so checkpoints and predictions can be shared (CI artifacts, colleagues)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed.

    A crash or an exception inside the block never leaves a half-written ``path``.
    """
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    sweep_stale(path.parent, prefix)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix + _owner_tag(), suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder ``tmp`` to ``out_dir``; an existing ``out_dir`` is swapped out
    first and deleted only after the move (put back if the move fails)."""
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700
    old = None
    if out_dir.exists():
        sweep_stale(out_dir.parent, f".{out_dir.name}.old-")
        old = out_dir.with_name(f".{out_dir.name}.old-{_owner_tag()}{os.urandom(3).hex()}")
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if old is not None:
            os.replace(old, out_dir)  # put the previous folder back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- staging that a killed process does not leave behind ------------------------------------


def _host_tag() -> str:
    # Staging names carry the host as well as the pid: on a shared (network) folder a pid of
    # another machine says nothing about whether its process still runs.
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _owner_tag() -> str:
    return f"{os.getpid()}-{_host_tag()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True  # cannot tell: keep it
    return True


def sweep_stale(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove ``parent/PREFIX<pid>-<host>-*`` entries whose process (on this host) has exited.

    Staging folders and temporary files of a process killed with SIGKILL (or a power cut) are
    never cleaned by it; the next run sweeps them. Entries of live processes, of other hosts, and
    names not in this form are left alone. Returns the removed paths.
    """
    parent = Path(parent)
    removed: list[Path] = []
    host = _host_tag()
    try:
        entries = list(parent.glob(glob.escape(prefix) + "*"))
    except OSError:
        return removed
    for entry in entries:
        rest = entry.name[len(prefix):]
        pid_text, _, tail = rest.partition("-")
        if not pid_text.isdigit() or not tail.startswith(f"{host}-") or _pid_alive(int(pid_text)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another process swept it first, or it is not ours to remove
    return removed


def staging_dir(prefix: str, parent: str | os.PathLike | None = None) -> Path:
    """A new private folder ``parent/PREFIX<pid>-<host>-XXXX`` (default: the temp dir), after
    sweeping the ones that exited processes left behind (:func:`sweep_stale`)."""
    where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep_stale(where, prefix)
    return Path(tempfile.mkdtemp(prefix=prefix + _owner_tag(), dir=where))


# -- checks before the work ----------------------------------------------------------------


def require_regular_file(path: str | os.PathLike, *, param: str | None = None) -> Path:
    """``path`` if it is an existing regular file (symlinks to one allowed), else a one-line error.

    FIFOs, sockets and devices are refused: reading one would block forever or never end.
    ``param`` (the parameter that named the file) travels with the error for the CLI to name its option.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MedauditError(f"{path}: no such file", param=param) from None
    except OSError as exc:
        raise MedauditError(f"{path}: cannot be read ({exc.strerror or exc})", param=param) from None
    if stat.S_ISDIR(mode):
        raise MedauditError(f"{path}: is a folder, expected a file", param=param)
    if not stat.S_ISREG(mode):
        raise MedauditError(f"{path}: not a regular file (a pipe, socket or device); give a file", param=param)
    return path


def check_destination(path: str | os.PathLike, *, kind: str = "dir", param: str | None = None) -> Path:
    """Fail now, before any work, if ``path`` cannot be created or written as a ``kind`` ("dir" or "file").

    Walks up to the nearest existing ancestor: it must be a writable folder (a file in the way,
    ``/proc``, a read-only mount or an immutable folder are refused with one line). An existing
    ``path`` must be of the right kind. Nothing is created. ``param`` as in :func:`require_regular_file`.
    """
    path = Path(path).absolute()
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise MedauditError(f"{path}: exists and is not a folder; choose another path", param=param)
        if kind == "file" and path.is_dir():
            raise MedauditError(f"{path}: is a folder; give a file name", param=param)
    ancestor = path if (kind == "dir" and path.is_dir()) else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MedauditError(f"{path}: {ancestor} is a file, so no folder can be made under it", param=param)
    if not _can_write_in(ancestor):
        raise MedauditError(f"{path}: {ancestor} is not writable; choose another output folder", param=param)
    return path


def _can_write_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (os.access misses read-only mounts, chattr +i, /proc)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".medaudit-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


def check_output_file(path: str | os.PathLike, *, inputs: tuple = (), param: str | None = None) -> Path:
    """:func:`check_destination` for a file, and refuse a ``path`` that is one of ``inputs``.

    Writing a result over the checkpoint or data it was computed from would destroy the input
    (``predict -o model.pt``); a symlink or hard link to an input counts as the input.
    """
    out = check_destination(path, kind="file", param=param)
    for src in inputs:
        if src is None:
            continue
        try:
            same = out.exists() and Path(src).exists() and os.path.samefile(out, src)
        except OSError:
            same = False
        if same:
            raise MedauditError(f"{path}: is the input {src}; writing there would destroy it, choose another path",
                                param=param)
    return out


@contextlib.contextmanager
def created_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Make ``path`` (and missing parents) for the block; if the block fails, remove again the
    folders made here that are still empty, so a failed run leaves no empty output folder."""
    path = Path(path)
    made: list[Path] = []
    probe = path
    while not probe.exists():
        made.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        raise


def code_digest(modules: Sequence[str], distributions: Sequence[str] = ()) -> str:
    """sha256 hex of the source bytes of ``modules`` and the installed versions of ``distributions``.

    What a cache of computed results keys on for "the code that computed them" (figures, model
    facts): any edit to one of those modules, or another version of a library, is another key.
    """
    import importlib.metadata
    import importlib.util

    h = hashlib.sha256()
    for name in modules:
        origin = importlib.util.find_spec(name).origin
        h.update(name.encode() + b"\0" + Path(origin).read_bytes() + b"\0")
    for dist in distributions:
        h.update(f"{dist}={importlib.metadata.version(dist)}\0".encode())
    return h.hexdigest()


def read_json_entry(file: Path, fmt: int, key: str, what: str) -> tuple[dict | None, str | None]:
    """One entry of a cache of JSON files ``{"format": fmt, "key": key, ...}``.

    Returns ``(entry, None)``; ``(None, None)`` when there is no entry yet; ``(None, why)`` when
    the file cannot be read, is not JSON or is not an entry of this format for ``key`` (``what``
    names the key's subject in that message). Callers check their own payload.
    """
    try:
        raw = file.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        entry = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, f"it cannot be read ({type(exc).__name__})"
    if not isinstance(entry, dict) or entry.get("format") != fmt or entry.get("key") != key:
        return None, f"it is not an entry for {what}"
    return entry, None


def write_json_entry(file: Path, entry: dict) -> None:
    """Write a cache entry atomically (its folder made); raises OSError when it cannot."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(file, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(entry, sort_keys=True), encoding="utf-8")
