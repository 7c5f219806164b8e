"""`medaudit report` end to end: data → models → cached predictions → snapshot → HTML/PDF/JSON.

This module only orchestrates; each step is a call into the module that owns it.
Inference runs once per (checkpoint, data, split) thanks to the predictions cache; every
number after that is computed from the saved predictions.
"""

from __future__ import annotations

import datetime as _dt
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from medaudit import __version__
from medaudit.audit import AuditSettings, ModelResult, assemble_snapshot, resolve_negative_classes
from medaudit.errors import MedauditError
from medaudit.naming import file_stems
from medaudit.predict import check_classes_match


@dataclass
class ReportOptions:
    checkpoints: list[Path]
    data_spec: str
    out_dir: Path
    names: list[str] | None = None
    classes: list[str] | None = None
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
    cam_method: str = "gradcam"
    cam_layer: str | None = None
    cam_per_group: int = 8
    formats: tuple[str, ...] = ("html", "pdf", "json")
    title: str | None = None
    author: str | None = None
    notes_path: Path | None = None
    template_dir: Path | None = None
    progress: bool = False
    command: str | None = None


def checkpoint_block(loaded) -> dict:
    """Facts about a checkpoint for the snapshot (architecture table, training curves)."""
    from medaudit.bench import count_flops
    from medaudit.models.factory import model_summary

    r = loaded.recipe
    summary = model_summary(loaded.model, loaded.arch)
    flops = count_flops(loaded.model, (1, r.in_chans, r.img_size, r.img_size))
    return {
        "path": str(loaded.path),
        "sha256": loaded.sha256,
        "arch": loaded.arch,
        "family": summary["family"],
        "num_classes": len(loaded.class_names),
        "img_size": r.img_size,
        "in_chans": r.in_chans,
        "mean": list(r.mean),
        "std": list(r.std),
        "resize": r.resize,
        "interpolation": r.interpolation,
        "params": summary["params"],
        "flops": flops["flops"],
        "macs": flops["macs"],
        "patch_size": summary["patch_size"],
        "depth": summary["depth"],
        "selected_on": loaded.meta.get("selected_on", "unknown"),
        "training": loaded.meta.get("training"),
        "history": loaded.meta.get("history"),
        "dataset_fingerprint": loaded.meta.get("dataset_fingerprint"),
    }


def _model_names(opts: ReportOptions) -> list[str]:
    if opts.names:
        if len(opts.names) != len(opts.checkpoints):
            raise MedauditError(f"--names has {len(opts.names)} names for {len(opts.checkpoints)} models")
        dup = sorted({n for n in opts.names if opts.names.count(n) > 1})
        if dup or not all(opts.names):
            raise MedauditError(f"--names: every model needs its own non-empty name ({', '.join(dup) or 'empty name'})")
        return list(opts.names)
    stems = [p.stem for p in opts.checkpoints]
    if len(set(stems)) != len(stems):
        return [f"{p.parent.name}/{p.stem}" for p in opts.checkpoints]
    return stems


def run_report(opts: ReportOptions) -> tuple[dict, dict[str, Path]]:
    """Run the whole audit; returns (snapshot, written paths)."""
    from medaudit.data import inspect_dataset, load_dataset
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.predict import predict_cached
    from medaudit.report import check_output_dir, write_report

    t0 = time.perf_counter()
    if not opts.checkpoints:
        raise MedauditError("--models needs at least one checkpoint")
    check_output_dir(opts.out_dir)  # before inference, not after
    ds = load_dataset(opts.data_spec, classes=opts.classes)
    split = ds.split(opts.settings.split)
    names = _model_names(opts)
    loaded = [load_checkpoint(p) for p in opts.checkpoints]
    for ld in loaded:
        check_classes_match(ld, ds.class_names)
    notes = None
    if opts.notes_path is not None:
        if not opts.notes_path.is_file():
            raise MedauditError(f"--notes file not found: {opts.notes_path}")
        notes = opts.notes_path.read_text(encoding="utf-8")

    dataset_block = inspect_dataset(ds)
    dataset_block["split_evaluated"] = opts.settings.split
    val_name = "val" if "val" in ds.splits and opts.settings.split != "val" else None

    timings: dict[str, float] = {}
    inference: dict[str, dict] = {}
    efficiency = None
    results: list[ModelResult] = []
    staging = Path(tempfile.mkdtemp(prefix="medaudit-report-"))
    try:
        extra_files: dict[str, Path] = {}
        stems = file_stems(names)
        for name, safe, ld in zip(names, stems, loaded):
            kw = dict(dataset_spec=opts.data_spec, model_name=name, cache_dir=opts.cache_dir, use_cache=opts.use_cache,
                      device=opts.device, batch_size=opts.batch_size, amp=opts.amp, progress=opts.progress)
            t = time.perf_counter()
            preds, cached = predict_cached(ld, split, split_name=opts.settings.split, **kw)
            val_preds = predict_cached(ld, ds.split(val_name), split_name=val_name, **kw)[0] if val_name else None
            timings[f"predict:{name}"] = time.perf_counter() - t
            preds.save(staging / f"{safe}.npz")
            preds.to_csv(staging / f"{safe}.csv")
            extra_files[f"predictions/{safe}.npz"] = staging / f"{safe}.npz"
            extra_files[f"predictions/{safe}.csv"] = staging / f"{safe}.csv"
            info = {"n": preds.n_samples, "file": f"predictions/{safe}.npz", "csv": f"predictions/{safe}.csv"}
            # How the pass ran (device, time, cache hit) is a measurement: it goes into `run`.
            inference[name] = {"device": preds.provenance.get("device"), "wall_s": preds.provenance.get("wall_s"),
                               "cached": cached}
            results.append(ModelResult(preds=preds, val_preds=val_preds, checkpoint=checkpoint_block(ld), prediction_info=info))

        if opts.bench:
            from medaudit.bench import benchmark_models
            from medaudit.device import resolve_device

            t = time.perf_counter()
            bench = benchmark_models(
                [(n, ld.model, (ld.recipe.in_chans, ld.recipe.img_size, ld.recipe.img_size)) for n, ld in zip(names, loaded)],
                device=opts.device, repeats=opts.bench_repeats, batch_sizes=opts.bench_batch_sizes,
                # CNNs are timed in the layout inference uses (medaudit.models.use_channels_last)
                channels_last=resolve_device(opts.device).type in ("cuda", "cpu"),
                flops={n: {"flops": r.checkpoint["flops"], "macs": r.checkpoint["macs"]} for n, r in zip(names, results)},
                checkpoint_paths=[ld.path for ld in loaded],
            )
            efficiency = {"environment": bench["environment"], "ratios": bench["ratios"],
                          "models": {n: bench["models"][n] for n in names}}
            timings["bench"] = time.perf_counter() - t

        if opts.cam:
            from medaudit.explain import cam_tiles_for_report

            t = time.perf_counter()
            negatives, _ = resolve_negative_classes(ds.class_names, ds.task, opts.settings)
            cams = cam_tiles_for_report(
                loaded, [r.preds for r in results], split, names=names, file_stems=stems, negative_classes=negatives,
                method=opts.cam_method, layer=opts.cam_layer, per_group=opts.cam_per_group, out_dir=staging / "cams",
            )
            for r, n in zip(results, names):
                r.cam = cams[n]
                for tile in cams[n].get("tiles", []):
                    extra_files[tile["file"]] = staging / tile["file"]
            timings["cam"] = time.perf_counter() - t

        run = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": opts.command or " ".join(shlex.quote(a) for a in sys.argv),
            "duration_s": None,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "predictions": inference,
            "efficiency": efficiency,
            "host": platform.node(),
            "versions": _versions(),
        }
        snapshot = assemble_snapshot(
            results, dataset=dataset_block, settings=opts.settings,
            title=opts.title or f"Audit of {', '.join(names)} on {Path(opts.data_spec).name}",
            author=opts.author, notes_markdown=notes, run=run,
        )
        run["duration_s"] = round(time.perf_counter() - t0, 3)
        paths = write_report(snapshot, opts.out_dir, formats=opts.formats, template_dir=opts.template_dir,
                             extra_files=extra_files)
        return snapshot, paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _versions() -> dict:
    import numpy
    import torch

    return {"medaudit": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}
