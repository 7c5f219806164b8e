"""Dataset summary for ``medaudit data inspect`` and the report's ``dataset`` block.

Duplicates are pixel-identical images (same content hash, see :mod:`medaudit.data.base`).
Counting rule:

* ``within[split]``: extra copies beyond the first inside that split
  (a picture present 3 times counts 2);
* ``across["a/b"]``: samples of the later split ``b`` whose picture also occurs in the
  earlier split ``a`` (order train, val, test, all) — e.g. test images already seen in
  training;
* ``leakage``: true when any picture is shared between two splits (train/val sharing
  inflates model selection, sharing with test inflates the reported metrics);
* ``examples``: up to ``max_examples`` ``[first_id, duplicate_id]`` pairs, across-split
  pairs first.

Near-duplicates (re-encoded, resized, brightened copies) are in ``near_duplicates``
(:mod:`medaudit.data.neardup`), and patients found in two splits in ``patients``
(:func:`patient_leakage`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

import numpy as np

from medaudit.data.base import Dataset, Split
from medaudit.data.neardup import find_near_duplicates


def _size_summary(sizes: Counter) -> dict:
    """Width/height range, number of distinct sizes and the most common (width, height)."""
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    (w, h), count = sizes.most_common(1)[0]
    return {
        "n_distinct": len(sizes),
        "width": {"min": min(widths), "max": max(widths)},
        "height": {"min": min(heights), "max": max(heights)},
        "most_common": {"size": [w, h], "count": count},
    }


def find_duplicates(splits: dict[str, Split], *, max_examples: int = 20) -> dict:
    """Duplicate pictures within and across splits (see the module docstring for the rule)."""
    first: dict[str, dict[str, str]] = defaultdict(dict)  # split -> hash -> first sample id
    within: dict[str, int] = {}
    within_examples: list[list[str]] = []
    for name, split in splits.items():
        extra = 0
        for sid, h in zip(split.sample_ids, split.content_hashes()):
            if h in first[name]:
                extra += 1
                within_examples.append([first[name][h], sid])
            else:
                first[name][h] = sid
        within[name] = extra
    across: dict[str, int] = {}
    across_examples: list[list[str]] = []
    for a, b in combinations(list(splits), 2):
        n = 0
        for sid, h in zip(splits[b].sample_ids, splits[b].content_hashes()):
            if h in first[a]:
                n += 1
                across_examples.append([first[a][h], sid])
        across[f"{a}/{b}"] = n
    return {
        "within": within,
        "across": across,
        "leakage": any(across.values()),
        "examples": (across_examples + within_examples)[:max_examples],
    }


def patient_leakage(splits: dict[str, Split], column: str | None, *, max_examples: int = 20) -> dict:
    """Patients whose samples are in more than one split (their hashed ids, never raw ones).

    A model that saw a patient's other images in training is tested on a familiar patient, so
    test metrics overstate performance on new patients, even without any duplicate image.
    Missing ids ("") are unknown, never counted as one shared patient.

    Parameters
    ----------
    splits : dict of str to Split
        In canonical order (train, val, test, all).
    column : str or None
        The metadata column of hashed patient ids (``Dataset.patient_column``).
    max_examples : int
        Most hashed ids listed per split pair.

    Returns
    -------
    dict
        JSON-serialisable. Without a column: ``{"column": None, "reason"}``. Otherwise
        ``{"column", "n_per_split": {split: distinct patients, or None where the split lacks the
        column}, "n_missing": {split: samples without an id}, "across": {"a/b": {"n": patients in
        both, "n_samples": samples of b from those patients, "examples": up to max_examples
        sorted hashed ids}}, "leakage": bool}``, for each earlier split ``a`` and later ``b``.
    """
    if column is None:
        return {"column": None, "reason": "the data names no patient column, so patients across splits were not "
                                          "checked"}
    ids: dict[str, np.ndarray | None] = {}
    for name, split in splits.items():
        col = (split.metadata or {}).get(column)
        ids[name] = None if col is None else np.asarray(col, dtype=str)
    known = {name: (set(v[v != ""].tolist()) if v is not None else None) for name, v in ids.items()}
    across: dict[str, dict] = {}
    for a, b in combinations(list(splits), 2):
        if known[a] is None or known[b] is None:
            continue
        shared = known[a] & known[b]
        across[f"{a}/{b}"] = {"n": len(shared), "n_samples": int(np.isin(ids[b], list(shared)).sum()) if shared else 0,
                              "examples": sorted(shared)[:max_examples]}
    return {
        "column": column,
        "n_per_split": {name: (len(v) if v is not None else None) for name, v in known.items()},
        "n_missing": {name: (int((v == "").sum()) if v is not None else None) for name, v in ids.items()},
        "across": across,
        "leakage": any(v["n"] for v in across.values()),
    }


def split_demographics(metadata: dict, patient_column: str | None) -> dict:
    """Who is in a split (CLAIM 36): counts per value of each categorical column ("unknown" for
    missing), a summary of each numeric column, and the number of patients.

    Returns
    -------
    dict
        ``groups`` {column: {label: count}}, ``numeric`` {column: {n_known, n_unknown, mean, median,
        min, max}}, ``n_patients`` (None without a patient column). The patient column itself is
        counted, never listed: its values are identifiers.
    """
    groups: dict = {}
    numeric: dict = {}
    for col, values in metadata.items():
        if col == patient_column:
            continue
        values = np.asarray(values)
        if values.dtype.kind == "f":
            known = values[np.isfinite(values)]
            numeric[col] = {"n_known": int(known.size), "n_unknown": int(values.size - known.size),
                            **({k: float(f(known)) for k, f in (("mean", np.mean), ("median", np.median),
                                                                 ("min", np.min), ("max", np.max))}
                               if known.size else {"mean": None, "median": None, "min": None, "max": None})}
        else:
            labels, counts = np.unique(np.where(values == "", "unknown", values), return_counts=True)
            groups[col] = {str(k): int(c) for k, c in zip(labels, counts, strict=True)}
    n_patients = None
    if patient_column and patient_column in metadata:
        ids = np.asarray(metadata[patient_column])
        n_patients = int(np.unique(ids[ids != ""]).size) + int((ids == "").sum())
    return {"groups": groups, "numeric": numeric, "n_patients": n_patients}


def inspect_dataset(ds: Dataset, *, max_examples: int = 20) -> dict:
    """Summarise a dataset: splits, class counts, image sizes/modes and duplicates.

    Decodes every image once (``split.verify()``), so an unreadable file raises
    :class:`~medaudit.errors.MedauditError` naming it.

    Returns
    -------
    dict
        ``{"spec", "fingerprint", "task", "class_names", "splits": {name: {"n",
        "class_counts", "image_sizes", "modes"}}, "duplicates": {...}, "near_duplicates":
        {...}, "patients": {...}}``; JSON-serialisable (:func:`find_duplicates`,
        :func:`medaudit.data.neardup.find_near_duplicates`, :func:`patient_leakage`).
        ``modes`` counts the files' original modes (``"I;16"``, ``"RGBA"``...) before
        normalisation.
    """
    splits = {}
    for name, split in ds.splits.items():
        split.verify()
        sizes, modes = split.image_stats()
        splits[name] = {
            "n": len(split),
            "class_counts": split.class_counts(),
            "image_sizes": _size_summary(sizes),
            "modes": dict(sorted(modes.items())),
        }
        if split.metadata:
            splits[name].update(split_demographics(split.metadata, ds.patient_column))
        if hasattr(split, "pixel_recipe"):  # DICOM: the windowing etc. is part of what was audited
            splits[name]["pixel_recipe"] = split.pixel_recipe()
    return {
        "spec": ds.spec,
        "fingerprint": ds.fingerprint(),
        "task": ds.task,
        "class_names": list(ds.class_names),
        "splits": splits,
        "duplicates": find_duplicates(ds.splits, max_examples=max_examples),
        "near_duplicates": find_near_duplicates(ds.splits, max_examples=max_examples),
        "patients": patient_leakage(ds.splits, ds.patient_column, max_examples=max_examples),
    }


def format_inspection(summary: dict) -> str:
    """Plain-text rendering of :func:`inspect_dataset`'s result for the terminal."""
    lines = [
        f"dataset     {summary['spec']}",
        f"task        {summary['task']}  ({len(summary['class_names'])} classes)",
        f"fingerprint {summary['fingerprint'][:16]}",
        "",
    ]
    names = summary["class_names"]
    width = max([len("split")] + [len(c) for c in names]) + 2
    split_names = list(summary["splits"])
    lines.append("class".ljust(width) + "".join(s.rjust(10) for s in split_names))
    for c in names:
        lines.append(c.ljust(width) + "".join(str(summary["splits"][s]["class_counts"][c]).rjust(10) for s in split_names))
    lines.append("total".ljust(width) + "".join(str(summary["splits"][s]["n"]).rjust(10) for s in split_names))
    lines.append("")
    for s, info in summary["splits"].items():
        sz = info["image_sizes"]
        common = "x".join(map(str, sz["most_common"]["size"]))
        modes = ", ".join(f"{m}: {n}" for m, n in info["modes"].items())
        lines.append(
            f"{s}: sizes {sz['width']['min']}-{sz['width']['max']} x {sz['height']['min']}-{sz['height']['max']} "
            f"({sz['n_distinct']} distinct, most common {common} x{sz['most_common']['count']}); modes {modes}"
        )
    dup = summary["duplicates"]
    lines.append("")
    lines.append("duplicates (extra copies) within: " + ", ".join(f"{k} {v}" for k, v in dup["within"].items()))
    if dup["across"]:
        lines.append("duplicates across splits: " + ", ".join(f"{k} {v}" for k, v in dup["across"].items()))
    if dup["leakage"]:
        # Report content, not a warnings.warn: leakage is a finding this command is asked for (``leakage`` in
        # --json), so it stays with the rest of the report on stdout; "WARNING" only makes it stand out.
        lines.append("WARNING: the same image occurs in more than one split (leakage); e.g. "
                     + "; ".join(f"{a} = {b}" for a, b in dup["examples"][:3]))  # fmt: skip
    lines += _near_duplicate_lines(summary.get("near_duplicates"))
    lines += _patient_lines(summary.get("patients"))
    return "\n".join(lines)


def _near_duplicate_lines(near: dict | None) -> list[str]:
    if not near:
        return []
    lines = ["", f"near-duplicates ({near['method']})",
             "  pairs within: " + ", ".join(f"{k} {v['n_pairs']}" for k, v in near["within"].items())]
    if near["across"]:
        lines.append("  across splits (samples of the later split): " + ", ".join(
            f"{k} {v['n']} ({v['n_pixel_identical']} pixel-identical)" for k, v in near["across"].items()))
    if near["leakage"]:
        lines.append("WARNING: near-identical images occur in more than one split (leakage)")
        if not any(v["examples"] for v in near["across"].values()):
            lines.append("  all of them pixel-identical (listed under duplicates)")
        for key, v in near["across"].items():
            for e in v["examples"][:5]:
                lines.append(f"  {key}: {e['a']} ~ {e['b']} (pHash distance {e['distance']}, "
                             f"thumbnail r {e['correlation']:.3f})")
    return lines


def _patient_lines(patients: dict | None) -> list[str]:
    if not patients:
        return []
    if patients["column"] is None:
        return ["", f"patients: not checked ({patients['reason']})"]
    counts = ", ".join(f"{k} {'no column' if v is None else v}" for k, v in patients["n_per_split"].items())
    lines = ["", f"patients (column '{patients['column']}'): {counts}"]
    if patients["leakage"]:
        lines.append("WARNING: the same patient occurs in more than one split (patient leakage)")
        for key, v in patients["across"].items():
            if v["n"]:
                shown = v["examples"][:10]
                rest = f" and {v['n'] - len(shown)} more" if v["n"] > len(shown) else ""
                lines.append(f"  {key}: {v['n']} patients ({v['n_samples']} samples of the later split): "
                             + ", ".join(shown) + rest)
    return lines
