"""The snapshot contract (``report.json``, docs/report-schema.md): its version, its reader, its views.

``medaudit report`` writes a snapshot; ``medaudit render`` and ``medaudit gate`` read one and need
nothing else. This module is the one place that knows which versions are readable and where a
version keeps what: :mod:`medaudit.audit` stamps :data:`SCHEMA_VERSION`, the report writer, the
renderer and the gates read through :func:`load_snapshot` and the ``measured_*`` views. It imports
nothing of medaudit but :mod:`medaudit.errors`, so the gate stays free of models and plotting.
"""

from __future__ import annotations

import json
from pathlib import Path

from medaudit.errors import MedauditError
from medaudit.fileio import require_regular_file

# 2.0: the measurements of the machine (inference device/time/cache hit, efficiency) moved into
# `run`, so everything else is a pure function of the predictions. 1.0 snapshots still render.
SCHEMA_VERSION = "2.0"
# Major versions read; minor versions only add keys (docs/report-schema.md, "Compatibility").
READABLE_MAJORS = ("1", "2")

_WRITTEN_BY = "pass the report.json written by `medaudit report`"


def check_snapshot(data: object, source: str, *, require_models: bool = True) -> None:
    """Raise unless ``data`` is a snapshot of a readable version (and, by default, lists models).

    Parameters
    ----------
    data : object
        A parsed ``report.json``.
    source : str
        What the error messages call it: the file, or "report" / "baseline" for a dict.
    require_models : bool
        Also check what evaluating a snapshot needs: a non-empty ``models`` list whose
        entries have a ``name`` (unique) and a ``metrics`` object with ``per_class`` rows.
        A snapshot written by ``medaudit report`` always has them; renderers pass False
        and show a missing block as "not available".

    Raises
    ------
    MedauditError
        Naming ``source`` and what is wrong.
    """
    if not isinstance(data, dict):
        raise MedauditError(f"{source}: not a medaudit report.json (top level is not an object)")
    version = data.get("schema_version")
    if version is None:
        raise MedauditError(f"{source}: no schema_version; {_WRITTEN_BY}")
    if str(version).split(".")[0] not in READABLE_MAJORS:
        raise MedauditError(f"{source}: schema_version {version!r} is not supported (this medaudit reads "
                            f"{' and '.join(m + '.x' for m in READABLE_MAJORS)}); re-create the report "
                            "with this version")
    if require_models:
        _check_models(data.get("models"), source)


def _check_models(models: object, source: str) -> None:
    if not isinstance(models, list) or not models:
        raise MedauditError(f"{source}: 'models' is missing or empty")
    names = []
    for i, m in enumerate(models):
        if not (isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("metrics"), dict)
                and isinstance(m["metrics"].get("per_class") or {}, dict)
                and all(isinstance(row, dict) for row in (m["metrics"].get("per_class") or {}).values())):
            raise MedauditError(f"{source}: models[{i}] needs a 'name' and a 'metrics' object with "
                                "per_class rows; the snapshot is malformed")
        names.append(m["name"])
    if len(set(names)) != len(names):
        raise MedauditError(f"{source}: model names are not unique: {names}")


def load_snapshot(path: str | Path, *, require_models: bool = True) -> dict:
    """Read a ``report.json`` and check it with :func:`check_snapshot`.

    Parameters
    ----------
    path : str or Path
        The snapshot file.
    require_models : bool
        See :func:`check_snapshot`; the gates keep the default, ``medaudit render`` passes False.

    Returns
    -------
    dict
        The parsed snapshot, as written.

    Raises
    ------
    MedauditError
        Naming ``path``: missing or unreadable file, invalid JSON, unreadable version, malformed models.
    """
    p = Path(path)
    if p.exists():
        require_regular_file(p)  # a FIFO would block the read forever
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MedauditError(f"{p}: file not found; {_WRITTEN_BY}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedauditError(f"{p}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedauditError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); {_WRITTEN_BY}") from None
    check_snapshot(data, str(p), require_models=require_models)
    return data


def measured_models(snapshot: dict) -> list[dict]:
    """``snapshot["models"]`` with each model's measurements from ``run`` merged back in.

    Parameters
    ----------
    snapshot : dict
        A schema 1.x or 2.x snapshot; not modified.

    Returns
    -------
    list of dict, one per model
        Shallow copies of ``models[i]`` carrying ``efficiency`` (``run.efficiency.models[name]``,
        or where schema 1.0 kept it, ``models[i].efficiency``; None when not measured) and
        ``predictions`` extended by ``run.predictions[name]`` (device, wall_s, cached): the
        view the report sections read.
    """
    run = snapshot.get("run") or {}
    effs = (run.get("efficiency") or {}).get("models") or {}
    passes = run.get("predictions") or {}
    out = []
    for m in snapshot.get("models") or []:
        name = m.get("name")
        out.append({**m, "efficiency": effs.get(name, m.get("efficiency")),  # 1.0 kept it in the model
                    "predictions": {**(m.get("predictions") or {}), **(passes.get(name) or {})}})
    return out


def measured_efficiency(snapshot: dict) -> dict | None:
    """The shared efficiency block (environment, paired ratios) of a snapshot.

    Parameters
    ----------
    snapshot : dict
        A schema 1.x or 2.x snapshot.

    Returns
    -------
    dict or None
        ``run.efficiency`` (2.0) or the top-level ``efficiency`` (1.0); None when not measured.
    """
    return (snapshot.get("run") or {}).get("efficiency") or snapshot.get("efficiency")
