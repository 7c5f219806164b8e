"""`medaudit report` end to end: data → models → cached predictions → snapshot → HTML/PDF/JSON.

This module only orchestrates; each step is a call into the module that owns it.
Inference runs once per (checkpoint, data, split) thanks to the predictions cache; every
number after that is computed from the saved predictions. :func:`run_report` reads as the
list of its stages; each stage is a helper below it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import platform
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy
import torch

from medaudit import __version__
from medaudit.audit import AuditSettings, ModelResult, assemble_snapshot, resolve_groups, resolve_negative_classes
from medaudit.bench import benchmark_models
from medaudit.checklists import check_names as check_checklists
from medaudit.clinical import recalibrated_variant
from medaudit.cohorts import check_not_inside, load_cohorts, parse_external, run_external
from medaudit.data import Dataset, Split, inspect_dataset, load_dataset
from medaudit.data.hashcache import cache_root
from medaudit.distributed import led_job
from medaudit.errors import MedauditError, MedauditWarning
from medaudit.fileio import require_regular_file, staging_dir
from medaudit.models.checkpoint import Loaded, load_checkpoint
from medaudit.models.facts import model_facts
from medaudit.naming import file_stems, model_names
from medaudit.phi import load_salt, salt_id
from medaudit.predict import check_classes_match, predict_cached
from medaudit.report import check_formats, check_output_dir, write_report
from medaudit.sweep import DEFAULT_SAMPLES, check_sweep_options, run_sweep
from medaudit.validation import recorded_validation


@dataclass
class ReportOptions:
    """Everything ``medaudit report`` can be asked for; the defaults are the command's.

    Attributes
    ----------
    checkpoints : list of Path, length M >= 1
        The models to audit.
    data_spec : str
        Folder, ``.npz``, ``.csv`` manifest or ``medmnist:NAME[@SIZE]`` (:func:`medaudit.data.load_dataset`).
    out_dir : Path
        The report folder; new, empty, or an earlier report (replaced as a whole).
    names : list of str, optional
        Display names, one per checkpoint (default: file stems, :func:`medaudit.naming.model_names`).
    classes : list of str, optional
        Class names for data with integer labels, in label order.
    patient_col : str, optional
        The metadata column of patient ids (default: ``patient_id`` when the data has one).
    settings : AuditSettings
        How the numbers are computed (split, bootstrap, negative classes ...).
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; inference, benchmark and CAMs.
    batch_size : int
        Inference batch size.
    amp : bool
        Mixed precision for inference on CUDA; CPU always runs fp32.
    use_cache : bool
        Reuse cached predictions of the same (checkpoint, data, split, precision), and figures
        drawn for the same numbers (``$MEDAUDIT_CACHE/figures``, :mod:`medaudit.report.figure_cache`).
    cache_dir : Path, optional
        Predictions cache (default: ``$MEDAUDIT_CACHE`` or ``~/.cache/medaudit``).
    bench : bool
        Measure latency, throughput and memory (into ``run.efficiency``).
    bench_repeats : int
        Timed forwards per model and batch size.
    bench_batch_sizes : tuple of int
        Batch sizes the benchmark times.
    cam : bool
        Draw Grad-CAM galleries.
    cam_method : str
        A key of :data:`medaudit.explain.CAM_METHODS` (``auto``: the family's measured default).
    cam_layer : str, optional
        Dotted path of the CAM target layer (default: chosen per architecture).
    cam_per_group : int
        Samples per gallery group.
    cam_masks, cam_boxes : Path, optional
        Lesion masks folder or boxes CSV (``--masks``/``--boxes``): localisation of the CAMs.
    formats : tuple of {"html", "pdf", "json"}
    title, author : str, optional
        Shown on the cover (default title: the models and the data).
    notes_path : Path, optional
        Markdown file with reviewer notes.
    template_dir : Path, optional
        Templates that override or extend the packaged ones.
    progress : bool
        Progress bars for inference.
    command : str, optional
        The command line recorded in ``run.command`` (default: ``sys.argv``).
    robustness : str or tuple of str, optional
        Corruption sweep (``--robustness``): ``"default"`` or corruption names; None: no sweep.
    robustness_samples : int
        Stratified subsample of the split the sweep runs on.
    robustness_severities : tuple of int
        Severities (1..5) of each corruption.
    external : tuple of str
        ``NAME=SPEC`` external cohorts (``--external``, :mod:`medaudit.cohorts`): every model on each.
    checklists : tuple of str
        Reporting checklists for the appendix (``--checklist``), recorded in ``settings.checklists``.
    """

    checkpoints: list[Path]
    data_spec: str
    out_dir: Path
    names: list[str] | None = None
    classes: list[str] | None = None
    patient_col: str | None = None
    settings: AuditSettings = field(default_factory=AuditSettings)
    device: str = "auto"
    batch_size: int = 64
    amp: bool = True  # CUDA only
    use_cache: bool = True
    cache_dir: Path | None = None
    bench: bool = True
    bench_repeats: int = 10
    # Batch 1 only by default: the evaluation pass itself measures batched throughput, and
    # timing a batch of 32 costs more than inferring a small test split (benchmarks/report_overhead.py).
    bench_batch_sizes: tuple[int, ...] = (1,)
    cam: bool = True
    cam_method: str = "auto"
    cam_layer: str | None = None
    cam_per_group: int = 8
    cam_masks: Path | None = None
    cam_boxes: Path | None = None
    formats: tuple[str, ...] = ("html", "pdf", "json")
    title: str | None = None
    author: str | None = None
    notes_path: Path | None = None
    template_dir: Path | None = None
    progress: bool = False
    command: str | None = None
    robustness: str | tuple[str, ...] | None = None
    robustness_samples: int = DEFAULT_SAMPLES
    robustness_severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    external: tuple[str, ...] = ()
    checklists: tuple[str, ...] = ()


@dataclass
class _Inputs:
    """What the stages share once the inputs are loaded and checked."""

    dataset: Dataset
    split: Split  # the one evaluated
    names: list[str]  # display names, one per checkpoint
    stems: list[str]  # unique file stems of those names (predictions, CAM tiles)
    loaded: list[Loaded]


def run_report(opts: ReportOptions) -> tuple[dict, dict[str, Path]]:
    """Run the whole audit: predictions (cached), efficiency, CAMs, snapshot, report files.

    Every input is checked before the first inference, so a typo fails in a second; an
    error later leaves neither a half-written report nor the staging folder.

    Parameters
    ----------
    opts : ReportOptions

    Returns
    -------
    snapshot : dict
        The snapshot as written to ``report.json`` (docs/report-schema.md), ``figures`` empty.
    paths : dict
        ``{"json"|"html"|"pdf"|"figures": path}`` in ``opts.out_dir``.

    Raises
    ------
    MedauditError
        Bad input: no checkpoint (``param="models"``), an unknown format (``"formats"``), an
        output folder that is not an earlier report (``"out_dir"``), a missing notes file
        (``"notes_path"``), names that clash (``"names"``), data or checkpoints that cannot be
        read or whose classes differ.
    """
    t0 = time.perf_counter()
    formats, names = _check_inputs(opts)
    notes = _read_notes(opts.notes_path)
    inputs = _load_inputs(opts, names)
    cohorts = load_cohorts(parse_external(opts.external), inputs.dataset.class_names, opts.classes)
    _verify_unpredicted(opts, inputs.dataset)
    timings: dict[str, float] = {}
    staging = staging_dir("medaudit-report-")
    try:
        results, inference, extra_files = _predict_models(opts, inputs, staging, timings)
        # After the passes, which hashed the evaluated and validation splits as they decoded them.
        dataset_block = inspect_dataset(inputs.dataset)
        dataset_block["split_evaluated"] = opts.settings.split
        efficiency = None
        if opts.bench:
            with _timed(timings, "bench"):
                efficiency = _measure_efficiency(opts, inputs, results)
        if opts.cam:
            with _timed(timings, "cam"):
                extra_files.update(_explain(opts, inputs, results, staging))
        robustness = None
        if opts.robustness is not None:
            with _timed(timings, "robustness"):
                robustness = _robustness(opts, inputs, results)
        external = _external(opts, inputs, results, cohorts, timings)
        run = _run_block(opts, timings, inference, efficiency)
        snapshot = assemble_snapshot(
            results, dataset=dataset_block, settings=_audit_settings(opts),
            title=opts.title or f"Audit of {', '.join(names)} on {Path(opts.data_spec).name}",
            author=opts.author, notes_markdown=notes, run=run, robustness=robustness, external=external,
        )
        run["duration_s"] = round(time.perf_counter() - t0, 3)
        paths = write_report(snapshot, opts.out_dir, formats=formats, template_dir=opts.template_dir,
                             extra_files=extra_files, figure_cache=cache_root() / "figures" if opts.use_cache else None)
        return snapshot, paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_inputs(opts: ReportOptions) -> tuple[tuple[str, ...], list[str]]:
    """The checks that need no data or model: (normalised formats, display names).

    The output folder is checked here, before inference, not after it.
    """
    if not opts.checkpoints:
        raise MedauditError("at least one checkpoint is needed", param="models")
    formats = check_formats(opts.formats)
    _refuse_inputs_inside(opts)  # first: its message names the input, the other only "unknown files"
    check_output_dir(opts.out_dir)
    if opts.cam:
        # Imported here, like the gallery below: medaudit.explain loads pytorch_grad_cam (seconds),
        # which a --no-cam report, cached or not, never needs.
        from medaudit.explain.evidence import check_lesion_source

        check_lesion_source(opts.cam_masks, opts.cam_boxes)
    elif opts.cam_masks is not None or opts.cam_boxes is not None:
        raise MedauditError("--masks/--boxes measure the Grad-CAM maps: drop --no-cam (and keep --cam-per-group > 0)",
                            param="masks")
    if opts.robustness is not None:
        check_sweep_options(opts.robustness, opts.robustness_severities, opts.robustness_samples)
    check_not_inside(parse_external(opts.external), opts.out_dir)
    check_checklists(opts.checklists)
    return formats, model_names(opts.checkpoints, opts.names or None)


def _verify_unpredicted(opts: ReportOptions, dataset: Dataset) -> None:
    """Decode (and hash) the splits no pass will decode -- ``train`` and the like -- before any inference,
    so an unreadable image there fails in seconds. The evaluated and ``val`` splits are hashed by their
    passes (:meth:`medaudit.data.base.Split.fused_scan_plan`) and checked there."""
    evaluated = dataset.split(opts.settings.split)
    for name, split in dataset.splits.items():
        if split is not evaluated and name != "val":
            split.verify()


def _audit_settings(opts: ReportOptions) -> AuditSettings:
    """``opts.settings`` with the requested checklists (``settings.checklists`` of the snapshot)."""
    if not opts.checklists:
        return opts.settings
    return replace(opts.settings, checklists=tuple(check_checklists(opts.checklists)))


def _refuse_inputs_inside(opts: ReportOptions) -> None:
    """An input inside the folder the report replaces would be deleted with it (a rerun into ``prev``
    of ``prev/model.pt``): refuse before anything is read."""
    out = Path(opts.out_dir).resolve()
    inputs = [("models", p) for p in opts.checkpoints] + [("notes_path", opts.notes_path),
                                                           ("template_dir", opts.template_dir)]
    if not opts.data_spec.lower().startswith("medmnist:"):
        inputs.append(("data", Path(opts.data_spec)))
    for param, path in inputs:
        if path is not None and Path(path).resolve().is_relative_to(out):
            raise MedauditError(f"{path} lies inside the output folder {opts.out_dir}, which the report replaces; "
                                "move it out or choose another output folder", param=param)


def _read_notes(notes_path: Path | None) -> str | None:
    """The reviewer notes (Markdown), or None when none were given."""
    if notes_path is None:
        return None
    if not notes_path.exists():
        raise MedauditError(f"{notes_path}: file not found; give a Markdown file of reviewer notes", param="notes_path")
    require_regular_file(notes_path, param="notes_path")
    try:
        return notes_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MedauditError(f"{notes_path}: not UTF-8 text; give a Markdown file of reviewer notes",
                            param="notes_path") from None


def _load_inputs(opts: ReportOptions, names: list[str]) -> _Inputs:
    """Load the data and every checkpoint; the models' classes must be the data's, in order."""
    dataset = load_dataset(opts.data_spec, classes=opts.classes, patient_col=opts.patient_col)
    split = dataset.split(opts.settings.split)  # an unknown split fails before the checkpoints are read
    _check_subgroups(opts, dataset, split)
    # Built on first use: a report whose passes are all cached needs no model (nor timm).
    loaded = [load_checkpoint(p, lazy=True) for p in opts.checkpoints]
    for ld in loaded:
        check_classes_match(ld, dataset.class_names)
    negatives, _ = resolve_negative_classes(dataset.class_names, dataset.task, opts.settings)
    opts.settings.clinical.check_classes(dataset.class_names, negatives)  # before inference, not after
    return _Inputs(dataset, split, names, file_stems(names), loaded)


def _check_subgroups(opts: ReportOptions, dataset: Dataset, split: Split) -> None:
    """Group columns, bins and the patient level against the evaluated split, before any inference;
    records the salt's id when patient ids were hashed."""
    sg = opts.settings.subgroups
    resolve_groups(split.metadata, dataset.patient_column, sg, f"split '{opts.settings.split}' of {opts.data_spec}")
    if dataset.patient_column is None:
        if sg.level == "patient":
            raise MedauditError(f"level 'patient': {opts.data_spec} names no patient column, so images cannot be "
                                "combined per patient; give a column of patient ids (--patient-col)", param="level")
        return
    sg.salt_id = salt_id(load_salt())


def _predict_models(opts: ReportOptions, inputs: _Inputs, staging: Path,
                    timings: dict[str, float]) -> tuple[list[ModelResult], dict[str, dict], dict[str, Path]]:
    """Predict every model on the evaluated split (and on ``val`` when there is one), through the cache.

    Each model's predictions are staged as ``<stem>.npz`` / ``.csv`` for the report's
    ``predictions/`` folder. Returns (results for :func:`assemble_snapshot`, how each
    pass ran for ``run.predictions``, ``{name in the report: staged file}``).
    """
    ds, split, split_name = inputs.dataset, inputs.split, opts.settings.split
    facts_cache = cache_root() / "models" if opts.use_cache else None
    results: list[ModelResult] = []
    inference: dict[str, dict] = {}
    extra_files: dict[str, Path] = {}
    for name, stem, ld in zip(inputs.names, inputs.stems, inputs.loaded, strict=True):
        kw = dict(dataset_spec=opts.data_spec, model_name=name, cache_dir=opts.cache_dir, use_cache=opts.use_cache,
                  device=opts.device, batch_size=opts.batch_size, amp=opts.amp, progress=opts.progress,
                  patient_column=ds.patient_column)
        # Everything chosen (operating points, thresholds, recalibration, conformal sets) is chosen
        # on validation: the data's own split, else the carve this model was selected on.
        val_split, val_name = validation_split(ds, ld, split_name, opts.data_spec)
        with _timed(timings, f"predict:{name}"):
            preds, cached = predict_cached(ld, split, split_name=split_name, **kw)
            val_preds = predict_cached(ld, val_split, split_name=val_name, **kw)[0] if val_split is not None else None
        preds.save(staging / f"{stem}.npz")
        preds.to_csv(staging / f"{stem}.csv")
        for ext in ("npz", "csv"):
            extra_files[f"predictions/{stem}.{ext}"] = staging / f"{stem}.{ext}"
        info = {"n": preds.n_samples, "file": f"predictions/{stem}.npz", "csv": f"predictions/{stem}.csv"}
        # The recalibrated probabilities are a named variant beside the originals, never in their place.
        variant = recalibrated_variant(preds, val_preds, [])
        if variant is not None:
            vstem = f"{stem}.{variant.provenance['variant']}"
            variant.save(staging / f"{vstem}.npz")
            variant.to_csv(staging / f"{vstem}.csv")
            for ext in ("npz", "csv"):
                extra_files[f"predictions/{vstem}.{ext}"] = staging / f"{vstem}.{ext}"
            info["variants"] = [{"name": variant.model_name, "kind": variant.provenance["variant"],
                                 "file": f"predictions/{vstem}.npz", "csv": f"predictions/{vstem}.csv"}]
        # How the pass ran (device, time, cache hit) is a measurement: it goes into `run`.
        inference[name] = {"device": preds.provenance.get("device"), "wall_s": preds.provenance.get("wall_s"),
                           "cached": cached}
        results.append(ModelResult(preds=preds, val_preds=val_preds, checkpoint=checkpoint_block(ld, facts_cache),
                                   prediction_info=info))
    return results, inference, extra_files


def validation_split(ds, loaded: Loaded, split_name: str, data_spec: str) -> tuple[Split | None, str | None]:
    """The split a model's choices are made on, and its name for the predictions (None, None: none).

    The dataset's ``val`` split when it has one (and it is not the evaluated split). Otherwise the
    validation samples ``medaudit train`` carved from ``train`` and recorded in the checkpoint
    (:func:`medaudit.validation.recorded_validation`), so thresholds are chosen on the samples the
    model was selected on, not on test. A recorded carve that the data no longer holds, or one
    carved from the evaluated split itself, gives none (with a warning saying why).
    """
    if "val" in ds.splits and split_name != "val":
        return ds.split("val"), "val"
    rec = recorded_validation(loaded.meta, str(loaded.path))
    if rec is None or rec["source"] != "carved":
        return None, None
    source = rec["split"]
    if source == split_name or source not in ds.splits:
        why = ("it was carved from the evaluated split itself" if source == split_name
               else f"{data_spec} has no '{source}' split")
        warnings.warn(f"{loaded.path}: its recorded validation samples cannot be used ({why}); nothing is chosen on "
                      "validation for it", MedauditWarning, stacklevel=2)
        return None, None
    pool = ds.split(source)
    index = {sid: i for i, sid in enumerate(pool.sample_ids)}
    missing = [sid for sid in rec["sample_ids"] if sid not in index]
    if missing:
        warnings.warn(f"{loaded.path}: {len(missing)} of the {rec['n']} validation samples recorded at training "
                      f"(e.g. {missing[0]!r}) are not in split '{source}' of {data_spec}; the data changed since "
                      "training, so nothing is chosen on validation for it", MedauditWarning, stacklevel=2)
        return None, None
    name = f"val (carved from {source})"
    return pool.subset([index[sid] for sid in rec["sample_ids"]], name=name), name


def _measure_efficiency(opts: ReportOptions, inputs: _Inputs, results: list[ModelResult]) -> dict:
    """The ``run.efficiency`` block: environment, paired ratios and one timing block per model."""
    names = inputs.names
    bench = benchmark_models(
        [(n, ld.model, (ld.recipe.in_chans, ld.recipe.img_size, ld.recipe.img_size))
         for n, ld in zip(names, inputs.loaded, strict=True)],
        device=opts.device, repeats=opts.bench_repeats, batch_sizes=opts.bench_batch_sizes,
        # None: each model in the layout inference uses (medaudit.models.runtime.use_channels_last).
        channels_last=None,
        # The FLOPs were counted once for the checkpoint block; a second counting forward is waste.
        flops={n: {"flops": r.checkpoint["flops"], "macs": r.checkpoint["macs"]}
               for n, r in zip(names, results, strict=True)},
        checkpoint_paths=[ld.path for ld in inputs.loaded],
    )
    return {"environment": bench["environment"], "ratios": bench["ratios"],
            "models": {n: bench["models"][n] for n in names}}


def _explain(opts: ReportOptions, inputs: _Inputs, results: list[ModelResult], staging: Path) -> dict[str, Path]:
    """Draw the Grad-CAM galleries into ``staging/cams`` and set each result's ``cam`` block.

    Every model explains the same samples, chosen from all models' predictions. Returns
    ``{tile name in the report: drawn file}`` (tile names are relative to the report folder).
    """
    from medaudit.explain import cam_tiles_for_report  # see _check_inputs: pytorch_grad_cam only with CAMs

    ds = inputs.dataset
    negatives, _ = resolve_negative_classes(ds.class_names, ds.task, opts.settings)
    cams = cam_tiles_for_report(
        inputs.loaded, [r.preds for r in results], inputs.split, names=inputs.names, file_stems=inputs.stems,
        negative_classes=negatives, method=opts.cam_method, layer=opts.cam_layer, per_group=opts.cam_per_group,
        out_dir=staging / "cams", masks_dir=opts.cam_masks, boxes_csv=opts.cam_boxes,
        n_bootstrap=opts.settings.bootstrap, seed=opts.settings.seed,
    )
    tiles: dict[str, Path] = {}
    for r, name in zip(results, inputs.names, strict=True):
        r.cam = cams[name]
        for tile in cams[name].get("tiles", []):
            tiles[tile["file"]] = staging / tile["file"]
    return tiles


def _external(opts: ReportOptions, inputs: _Inputs, results: list[ModelResult], cohorts: list,
              timings: dict[str, float]) -> dict | None:
    """The ``external`` block: every model on each ``--external`` cohort and per ``site`` (medaudit.cohorts)."""
    ds = inputs.dataset
    negatives, _ = resolve_negative_classes(ds.class_names, ds.task, opts.settings)
    kw = dict(cache_dir=opts.cache_dir, use_cache=opts.use_cache, device=opts.device, batch_size=opts.batch_size,
              amp=opts.amp, progress=opts.progress)
    with _timed(timings, "external") if cohorts else contextlib.nullcontext():
        return run_external(cohorts, inputs.loaded, inputs.names, [r.preds for r in results], inputs.split,
                            opts.settings.split, negatives, settings=opts.settings, predict_kw=kw)


def _robustness(opts: ReportOptions, inputs: _Inputs, results: list[ModelResult]) -> dict:
    """The ``robustness`` block: every model on corrupted copies of a subsample (medaudit.sweep), cached."""
    ds = inputs.dataset
    negatives, _ = resolve_negative_classes(ds.class_names, ds.task, opts.settings)
    return run_sweep(inputs.loaded, inputs.names, inputs.split, [r.preds for r in results],
                     corruptions=opts.robustness, severities=opts.robustness_severities,
                     n_samples=opts.robustness_samples, seed=opts.settings.seed, negative_classes=negatives,
                     n_bootstrap=opts.settings.bootstrap, split_name=opts.settings.split, progress=opts.progress,
                     dataset_spec=opts.data_spec, cache_dir=opts.cache_dir, use_cache=opts.use_cache,
                     device=opts.device, amp=opts.amp, batch_size=opts.batch_size)


def _run_block(opts: ReportOptions, timings: dict[str, float], inference: dict[str, dict],
               efficiency: dict | None) -> dict:
    """The snapshot's ``run`` block: when, how and where this run happened (``duration_s`` set last)."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": opts.command or " ".join(shlex.quote(a) for a in sys.argv),
        "duration_s": None,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "predictions": inference,
        "efficiency": efficiency,
        "host": platform.node(),
        **_distributed_record(),
        "versions": {"medaudit": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
                     "python": platform.python_version()},
    }


def _distributed_record() -> dict:
    """``{"distributed": {world_size, backend, devices}}`` under torchrun; nothing with one process."""
    job = led_job()
    return {"distributed": job.record()} if job is not None else {}


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the wall time of the block in ``timings[key]`` (seconds) when it completes."""
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start


def checkpoint_block(loaded: Loaded, facts_cache: Path | None = None) -> dict:
    """Facts about a checkpoint for the snapshot (architecture table, training curves).

    Parameters
    ----------
    loaded : Loaded
        A checkpoint from :func:`medaudit.models.checkpoint.load_checkpoint`; its model is not changed.
    facts_cache : Path, optional
        Where the architecture facts are kept between runs (:func:`medaudit.models.facts.model_facts`).

    Returns
    -------
    dict
        The ``models[i].checkpoint`` block (docs/report-schema.md): path, digest, architecture,
        family, input recipe, parameter and FLOP counts (one image), and the training record.
    """
    r = loaded.recipe
    facts = model_facts(loaded, facts_cache)
    return {
        "path": str(loaded.path),
        "sha256": loaded.sha256,
        "arch": loaded.arch,
        "family": facts["family"],
        "num_classes": len(loaded.class_names),
        "img_size": r.img_size,
        "in_chans": r.in_chans,
        "mean": list(r.mean),
        "std": list(r.std),
        "resize": r.resize,
        "interpolation": r.interpolation,
        "params": facts["params"],
        "flops": facts["flops"],
        "macs": facts["macs"],
        "patch_size": facts["patch_size"],
        "depth": facts["depth"],
        "selected_on": loaded.meta.get("selected_on", "unknown"),
        "training": _training_record(loaded.meta.get("training")),
        "history": loaded.meta.get("history"),
        "dataset_fingerprint": loaded.meta.get("dataset_fingerprint"),
    }


def _training_record(training: dict | None) -> dict | None:
    """The training block for the snapshot: a carve's sample ids stay in the checkpoint (the report
    shows their count and fingerprint, not thousands of file names)."""
    if not isinstance(training, dict) or not isinstance(training.get("validation"), dict):
        return training
    validation = {k: v for k, v in training["validation"].items() if k != "sample_ids"}
    return {**training, "validation": validation}

