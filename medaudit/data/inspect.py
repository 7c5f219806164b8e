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
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

from medaudit.data.base import Dataset, Split


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


def inspect_dataset(ds: Dataset, *, max_examples: int = 20) -> dict:
    """Summarise a dataset: splits, class counts, image sizes/modes and duplicates.

    Decodes every image once (``split.verify()``), so an unreadable file raises
    :class:`~medaudit.errors.MedauditError` naming it.

    Returns
    -------
    dict
        ``{"spec", "fingerprint", "task", "class_names", "splits": {name: {"n",
        "class_counts", "image_sizes", "modes"}}, "duplicates": {...}}``; JSON-serialisable.
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
    return {
        "spec": ds.spec,
        "fingerprint": ds.fingerprint(),
        "task": ds.task,
        "class_names": list(ds.class_names),
        "splits": splits,
        "duplicates": find_duplicates(ds.splits, max_examples=max_examples),
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
    return "\n".join(lines)
