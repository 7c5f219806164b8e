"""The validation samples a checkpoint was selected on, as ``medaudit train`` records them.

``medaudit train`` writes ``training["validation"]`` into every checkpoint it saves, so that a
later ``medaudit report`` can choose thresholds on the same validation samples instead of on
test. The block (docs/training-results.md, "The validation record"):

``{"source": "carved" | "val", "split": str, "n": int, "fingerprint": str, "sample_ids": [str, ...]}``

* ``source`` ``"carved"``: the data had no validation split and ``n`` samples were carved from
  the ``split`` split (``"train"`` or ``"all"``); ``sample_ids`` lists them (required) and
  ``fraction``/``seed`` say how they were drawn.
* ``source`` ``"val"``: the data's own ``split`` split (``"val"``) was used; ``sample_ids`` is
  optional (the split's name identifies it), the fingerprint is always there.
* ``fingerprint``: :func:`ids_fingerprint` of the validation sample ids.

This module is torch-free and below both ``train`` (which writes the block) and the audit
path (which reads it), so the audit never imports training code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

from medaudit.errors import MedauditError

SOURCES = ("carved", "val")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def ids_fingerprint(sample_ids: Iterable[str]) -> str:
    """SHA-256 of a set of sample ids, independent of their order.

    The ids are sorted (Python string order, i.e. by code point), written as a compact JSON
    array (``json.dumps(sorted_ids, ensure_ascii=False, separators=(",", ":"))``) and hashed as
    UTF-8. JSON quoting keeps the encoding unambiguous whatever characters an id holds
    (``["a,b"]`` and ``["a", "b"]`` differ).

    Parameters
    ----------
    sample_ids : iterable of str, length N

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    text = json.dumps(sorted(str(s) for s in sample_ids), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def validation_record(source: str, split: str, sample_ids: Iterable[str], *, include_ids: bool,
                      **extra) -> dict:
    """The ``training["validation"]`` block for these validation samples.

    Parameters
    ----------
    source : {"carved", "val"}
    split : str
        The split carved from (``source="carved"``) or used (``"val"``).
    sample_ids : iterable of str, length N
        The validation samples' ids (in the split's order; the fingerprint ignores order).
    include_ids : bool
        Store the ids themselves (required for ``"carved"``).
    **extra
        Further JSON-able entries (``fraction``, ``seed`` of a carve).

    Returns
    -------
    dict
        ``source``, ``split``, ``n``, ``fingerprint``, the ``extra`` entries and, when
        ``include_ids``, ``sample_ids`` (list of str).
    """
    ids = [str(s) for s in sample_ids]
    rec = {"source": source, "split": split, "n": len(ids), "fingerprint": ids_fingerprint(ids), **extra}
    if include_ids:
        rec["sample_ids"] = ids
    return rec


def recorded_validation(checkpoint_meta: dict, checkpoint: str | None = None) -> dict | None:
    """The checked validation record of a checkpoint, or None when it has none.

    Parameters
    ----------
    checkpoint_meta : dict
        The checkpoint's config (``LoadedCheckpoint.meta``, or the snapshot's ``checkpoint``
        block); ``meta["training"]["validation"]`` is read.
    checkpoint : str, optional
        How to name the checkpoint in an error message (its path).

    Returns
    -------
    dict or None
        None for checkpoints without the record (converted weights, checkpoints written
        before it existed). Otherwise a new dict with ``source``, ``split``, ``n``,
        ``fingerprint`` and ``sample_ids`` (list of str, or None when not stored), plus any
        other entries of the block.

    Raises
    ------
    MedauditError
        (``param="models"``) for a malformed block: wrong types, an unknown source, a carve
        without its ids, ids that repeat, a count or fingerprint that does not match the ids.
    """
    training = checkpoint_meta.get("training") if isinstance(checkpoint_meta, dict) else None
    if not isinstance(training, dict) or training.get("validation") is None:
        return None
    block = training["validation"]
    where = f"checkpoint {checkpoint}" if checkpoint else "the checkpoint"

    def bad(why: str) -> MedauditError:
        return MedauditError(f"{where}: its training.validation record is malformed ({why}); re-save it with "
                             "medaudit train or remove the record", param="models")

    if not isinstance(block, dict):
        raise bad(f"a {type(block).__name__}, not a mapping")
    source, split, n, fp = block.get("source"), block.get("split"), block.get("n"), block.get("fingerprint")
    if source not in SOURCES:
        raise bad(f"source {source!r} is not one of {', '.join(SOURCES)}")
    if not isinstance(split, str) or not split:
        raise bad(f"split {split!r} is not a split name")
    # bool is an int subclass; a count of True is a bug, not one sample.
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad(f"n {n!r} is not a positive count")
    if not isinstance(fp, str) or not _HEX64.match(fp):
        raise bad("fingerprint is not 64 lowercase hex digits")
    ids = block.get("sample_ids")
    if ids is None:
        if source == "carved":
            raise bad("a carved validation split without its sample_ids")
    else:
        if not isinstance(ids, list | tuple) or not all(isinstance(s, str) for s in ids):
            raise bad("sample_ids is not a list of strings")
        if len(set(ids)) != len(ids):
            raise bad("sample_ids repeat")
        if len(ids) != n:
            raise bad(f"n is {n} but {len(ids)} sample_ids are listed")
        if ids_fingerprint(ids) != fp:
            raise bad("the fingerprint does not match the sample_ids")
        ids = list(ids)
    return {**block, "sample_ids": ids}
