"""medaudit.phi: patient ids become salted hashes; the salt is secret, per user, recorded only by hash."""

from __future__ import annotations

import hashlib
import stat

import numpy as np
import pytest

from medaudit.errors import MedauditError
from medaudit.phi import SALT_ENV, hash_identifiers, load_salt, salt_id


def test_hashes_are_salted_stable_and_keep_missing_as_unknown():
    salt = b"s" * 32
    h = hash_identifiers(["P001", "P001", " P002 ", "", None], salt)
    assert h[0] == h[1] and h[0] != h[2] and h[3] == h[4] == ""
    assert h[0] == "p-" + hashlib.sha256(salt + b"\0P001").hexdigest()[:16]
    assert h[2] == hash_identifiers(["P002"], salt)[0], "surrounding blanks do not make another patient"
    assert hash_identifiers(["P001"], b"t" * 32)[0] != h[0], "another salt, other hashes"
    assert all("P00" not in x for x in h)
    assert salt_id(salt) != salt_id(b"t" * 32) and salt.hex()[:12] not in salt_id(salt)


def test_the_salt_file_is_made_once_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    first = load_salt()
    path = tmp_path / "medaudit" / "salt"
    assert len(first) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_salt() == first
    path.write_text("not hex")
    with pytest.raises(MedauditError, match="salt file is unreadable"):
        load_salt()


def test_the_environment_salt_wins_and_must_not_be_short(monkeypatch):
    monkeypatch.setenv(SALT_ENV, "project-salt-0123456789")
    assert load_salt() == b"project-salt-0123456789"
    monkeypatch.setenv(SALT_ENV, "short")
    with pytest.raises(MedauditError, match="at least 16"):
        load_salt()


def test_split_metadata_must_match_the_samples():
    from medaudit.data.base import Split

    ok = Split("test", ["a", "b"], np.array([0, 1]), ["x", "y"], array=np.zeros((2, 4, 4), np.uint8),
               metadata={"age": np.array([30.0, np.nan]), "site": np.array(["A", ""])})
    sub = ok.subset([1], "one")
    assert sub.metadata["site"].tolist() == [""] and np.isnan(sub.metadata["age"][0])
    with pytest.raises(ValueError, match="metadata column 'age'"):
        Split("test", ["a", "b"], np.array([0, 1]), ["x", "y"], array=np.zeros((2, 4, 4), np.uint8),
              metadata={"age": np.array([30.0])})
