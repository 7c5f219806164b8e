"""Identifiers that must never reach a report in the clear (PHI): salted hashes, made once at load time.

A patient id (a CSV column, DICOM PatientID) is replaced by ``p-`` + 16 hex digits of
``sha256(salt || 0x00 || id)`` as soon as it is read, so predictions files, caches and snapshots
only ever hold the hash. The same id gives the same hash with the same salt, which is what leakage
checks and patient-level analyses need; without the salt the hash cannot be reversed by trying
likely ids (patient numbers are short). The salt is secret and per user (or per project, with
``MEDAUDIT_SALT``); a snapshot records :func:`salt_id`, a hash of the salt, so two reports can be
seen to share one without revealing it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medaudit.errors import MedauditError

SALT_ENV = "MEDAUDIT_SALT"


def _salt_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "medaudit" / "salt"


def load_salt() -> bytes:
    """The hashing salt: ``$MEDAUDIT_SALT`` (any text, at least 16 characters), else a random 32-byte
    salt kept in ``~/.config/medaudit/salt`` (made on first use, readable by the user only)."""
    env = os.environ.get(SALT_ENV)
    if env is not None:
        if len(env) < 16:
            raise MedauditError(f"{SALT_ENV} is {len(env)} characters; use at least 16 (a short salt can be "
                                "guessed, and with it every hashed patient id)")
        return env.encode("utf-8")
    path = _salt_file()
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise MedauditError(f"{path}: the medaudit salt file is unreadable ({exc}); fix or remove it, or set "
                            f"{SALT_ENV}") from None
    salt = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(salt.hex() + "\n")
    return salt


def salt_id(salt: bytes) -> str:
    """What a snapshot records about the salt: 12 hex digits of its own hash, not the salt."""
    return hashlib.sha256(b"medaudit-salt-id\0" + salt).hexdigest()[:12]


def hash_identifiers(values: Sequence[str], salt: bytes) -> np.ndarray:
    """Salted hashes of identifiers, ``"p-" + 16 hex``; a missing value ("" or None) stays "" (unknown).

    Parameters
    ----------
    values : sequence of str, length N
    salt : bytes
        From :func:`load_salt`.

    Returns
    -------
    ndarray of str, shape (N,)
    """
    out = []
    for v in values:
        text = "" if v is None else str(v).strip()
        out.append("" if not text else
                   "p-" + hashlib.sha256(salt + b"\0" + text.encode("utf-8")).hexdigest()[:16])
    return np.asarray(out, dtype=str)
