"""Architecture facts of a checkpoint's model for the report, kept between runs.

Family, parameter count, depth, patch size and FLOPs/MACs per image are a pure function of the
checkpoint's bytes and metadata (architecture, weights' shapes, recipe) and
of the code that builds and counts the model: medaudit's factory, runtime and bench modules and
the torch, timm and torchvision versions. So they are kept in
``$MEDAUDIT_CACHE/models/<key>.json``, and a report whose predictions are all cached does not
build the model just to count it (building imports timm, torchvision and ``torch._dynamo``:
~2 s of a ~10 s cached report).

An entry is used only when its key matches and every fact has its type; anything else gives one
:class:`~medaudit.errors.MedauditWarning` and is recomputed and rewritten. Like the other caches,
the folder is trusted as much as the user's own files (the check catches damage, not a forger),
and what it holds is only ever shown as numbers.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from medaudit.errors import MedauditWarning
from medaudit.fileio import code_digest, read_json_entry, write_json_entry

FORMAT = 1
#: The modules whose code decides the facts (building the model, naming its family, counting FLOPs).
FACT_MODULES = ("medaudit.models.factory", "medaudit.models.runtime", "medaudit.bench")
FACT_DISTRIBUTIONS = ("torch", "timm", "torchvision")
# Each fact and the types it may have (None: not defined for this architecture).
_TYPES = {"family": (str,), "params": (int,), "patch_size": (int, type(None)), "depth": (int, type(None)),
          "flops": (int,), "macs": (int,)}


def facts_key(loaded) -> str:
    """sha256 of the checkpoint's digest, what the model is built from (a ``.safetensors`` digest does
    not cover its JSON sidecar), the input it is counted at and the code that counts."""
    r = loaded.recipe
    built = json.dumps({"arch": loaded.arch, "classes": len(loaded.class_names),
                        "small_stem": loaded.meta.get("small_stem"), "in_chans": r.in_chans, "img_size": r.img_size},
                       sort_keys=True)
    code = code_digest(FACT_MODULES, FACT_DISTRIBUTIONS)
    return hashlib.sha256(f"medaudit-model-facts/{FORMAT}/{loaded.sha256}/{built}/{code}".encode()).hexdigest()


def model_facts(loaded, cache_dir: Path | None = None) -> dict:
    """``{"family", "params", "patch_size", "depth", "flops", "macs"}`` of a checkpoint's model.

    Parameters
    ----------
    loaded : Loaded
        From :func:`medaudit.models.checkpoint.load_checkpoint`; its model is built only when the
        facts are not cached, and is not changed.
    cache_dir : Path, optional
        Where entries are kept (``$MEDAUDIT_CACHE/models``); None computes without the cache.

    Returns
    -------
    dict
        :func:`medaudit.models.factory.model_summary` and :func:`medaudit.bench.count_flops` (one
        image at the recipe's size).
    """
    key = facts_key(loaded) if cache_dir is not None else None
    if key is not None:
        facts = _read(Path(cache_dir) / f"{key}.json", key)
        if facts is not None:
            return facts
    facts = _compute(loaded)
    if key is not None:
        _write(Path(cache_dir) / f"{key}.json", key, facts)
    return facts


def _compute(loaded) -> dict:
    from medaudit.bench import count_flops
    from medaudit.models.factory import model_summary

    r = loaded.recipe
    return {**model_summary(loaded.model, loaded.arch),
            **count_flops(loaded.model, (1, r.in_chans, r.img_size, r.img_size))}


def _read(file: Path, key: str) -> dict | None:
    entry, problem = read_json_entry(file, FORMAT, key, "this checkpoint")
    if entry is None:
        return _refuse(file, problem) if problem else None
    facts = entry.get("facts")
    if not isinstance(facts, dict) or set(facts) != set(_TYPES):
        return _refuse(file, f"facts {sorted(facts) if isinstance(facts, dict) else facts!r} instead of {sorted(_TYPES)}")
    for name, types in _TYPES.items():
        value = facts[name]
        if isinstance(value, bool) or not isinstance(value, types) or (isinstance(value, int) and value < 0):
            return _refuse(file, f"{name} = {value!r} is not a count")
    return facts


def _refuse(file: Path, why: str) -> None:
    warnings.warn(f"model facts cache entry {file} is unusable ({why}); counting the model again and rewriting it",
                  MedauditWarning, stacklevel=4)
    return None


def _write(file: Path, key: str, facts: dict) -> None:
    try:
        write_json_entry(file, {"format": FORMAT, "key": key, "facts": facts})
    except OSError as exc:
        warnings.warn(f"could not write the model facts cache {file} ({exc.strerror or exc}); the next report will "
                      "count the model again", MedauditWarning, stacklevel=3)
