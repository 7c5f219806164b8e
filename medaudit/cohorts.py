"""The external-cohort stage of ``medaudit report --external NAME=SPEC``: load, check, predict, embed.

Each ``SPEC`` is any ``--data`` spec (:func:`medaudit.data.load_dataset`). The cohort is its
``test`` split when it has one, else its only split (a folder of class folders is one split,
``all``); data with several splits but no ``test`` is refused (say which split you mean by
pointing SPEC at it). Its classes must be the models' (the internal data's), in the same order.

Every model predicts each cohort through :func:`medaudit.predict.predict_cached` (cached exactly
like the internal split: a rerun does no inference), and the first model's penultimate features
(:func:`medaudit.embed.features_cached`, cached too) feed the MMD test. Everything after that is
the pure :mod:`medaudit.external`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medaudit.data import Split, load_dataset
from medaudit.embed import features_cached
from medaudit.errors import MedauditError
from medaudit.external import cohort_entry, external_block, site_entries
from medaudit.predict import predict_cached

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Cohort:
    """One loaded external cohort."""

    name: str
    spec: str
    split: Split
    split_name: str


def parse_external(values) -> list[tuple[str, str]]:
    """``--external NAME=SPEC`` values as (name, spec) pairs, checked before anything is loaded.

    Parameters
    ----------
    values : iterable of str

    Returns
    -------
    list of (str, str)

    Raises
    ------
    MedauditError
        (``param="external"``) a value without ``=``, an empty or odd name (letters, digits,
        ``_ . -``; at most 64), an empty spec, or a name given twice.
    """
    out: list[tuple[str, str]] = []
    for value in values or ():
        name, sep, spec = str(value).partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not spec:
            raise MedauditError(f"external {value!r}: give NAME=SPEC, e.g. site_b=data/site_b (SPEC is any --data "
                                "spec)", param="external")
        if not _NAME.match(name):
            raise MedauditError(f"external {value!r}: the name {name!r} must start with a letter or digit and hold "
                                "only letters, digits, '_', '.', '-' (at most 64)", param="external")
        if name in {n for n, _ in out}:
            raise MedauditError(f"external name {name!r} is given twice; give each cohort its own name",
                                param="external")
        out.append((name, spec))
    return out


def check_not_inside(pairs: list[tuple[str, str]], out_dir: Path) -> None:
    """A cohort inside the report folder would be deleted with it: refuse before reading it."""
    out = Path(out_dir).resolve()
    for name, spec in pairs:
        if not spec.lower().startswith("medmnist:") and Path(spec).resolve().is_relative_to(out):
            raise MedauditError(f"external {name}={spec} lies inside the output folder {out_dir}, which the report "
                                "replaces; move it out or choose another output folder", param="external")


def load_cohorts(pairs: list[tuple[str, str]], class_names: list[str], classes: list[str] | None = None) -> list[Cohort]:
    """Load each cohort and check its classes against the models'; before any inference.

    Parameters
    ----------
    pairs : list of (name, spec)
    class_names : list of str
        The models' classes (the internal data's), in order.
    classes : list of str, optional
        Class names for data with integer labels (``--classes``), as for the internal data.

    Returns
    -------
    list of Cohort

    Raises
    ------
    MedauditError
        (``param="external"``) data that cannot be loaded (its own message, prefixed with the
        cohort), several splits but no ``test``, or other classes.
    """
    out = []
    for name, spec in pairs:
        try:
            ds = load_dataset(spec, classes=classes)
        except MedauditError as exc:
            raise MedauditError(f"external {name}={spec}: {exc}", param="external") from None
        if "test" in ds.splits:
            split_name = "test"
        elif len(ds.splits) == 1:
            split_name = next(iter(ds.splits))
        else:
            raise MedauditError(f"external {name}={spec}: it has splits {sorted(ds.splits)} but no 'test'; point SPEC "
                                "at the one split to evaluate", param="external")
        if list(ds.class_names) != list(class_names):
            raise MedauditError(f"external {name}={spec}: its classes {list(ds.class_names)} differ from the models' "
                                f"{list(class_names)}; the cohort needs the same classes in the same order",
                                param="external")
        out.append(Cohort(name, spec, ds.split(split_name), split_name))
    return out


def run_external(cohorts: list[Cohort], loaded: list, names: list[str], internal_preds: list, internal_split: Split,
                 reference_split: str, negatives: list[str], *, settings, predict_kw: dict,
                 features: bool = True) -> dict | None:
    """Predict every model on every cohort (cached), embed for MMD (cached), build the ``external`` block.

    Parameters
    ----------
    cohorts : list of Cohort
    loaded : list of Loaded
        The checkpoints, in the report's order.
    names : list of str
        Display names of the models.
    internal_preds : list of Predictions
        Each model on the internal evaluated split (the reference).
    internal_split : Split
        That split (its features are the MMD reference).
    reference_split : str
        Its name (``test``).
    negatives : list of str
        The healthy classes.
    settings : AuditSettings
        Bootstrap count, seed, ECE bins.
    predict_kw : dict
        ``cache_dir``, ``use_cache``, ``device``, ``batch_size``, ``amp``, ``progress``.
    features : bool
        Compute penultimate features for MMD (False: BBSD and label shift only).

    Returns
    -------
    dict or None
        :func:`medaudit.external.external_block` (None without cohorts and without sites).
    """
    boot = dict(n_bootstrap=settings.bootstrap, seed=settings.seed, ece_bins=settings.ece_bins)
    fkw = {k: predict_kw[k] for k in ("cache_dir", "use_cache", "device", "batch_size") if k in predict_kw}
    ref_feats = None
    if features and cohorts:
        ref_feats = features_cached(loaded[0], internal_split, split_name=reference_split, **fkw)[1]
    entries = []
    for c in cohorts:
        preds = [predict_cached(ld, c.split, split_name=c.split_name, dataset_spec=c.spec, model_name=name,
                                **predict_kw)[0] for ld, name in zip(loaded, names, strict=True)]
        feats = None
        if ref_feats is not None:
            feats = (ref_feats, features_cached(loaded[0], c.split, split_name=c.split_name, **fkw)[1])
        entries.append(cohort_entry(c.name, c.spec, internal_preds, preds, negatives, features=feats, **boot))
    sites = site_entries(internal_preds, negatives, **boot)
    return external_block(reference_split, entries, sites)
