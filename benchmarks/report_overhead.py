"""What `medaudit report` costs on top of inference, and what a re-render from the snapshot costs.

Setup: medaudit's demo image folder (4 classes, grey PNGs, default 128 px; test 51 and val
24 images per class) and two seeded random-init checkpoints, a CNN (``resnet18``) and a ViT
(``vit_tiny_patch16_224`` built for the input size). Random weights do not change timings.

Measured in one process, in this order:

1. one-off imports of the report stack (matplotlib, WeasyPrint, pytorch-grad-cam), paid by
   every CLI run, printed separately so that the runs below compare like with like;
2. ``bare``: a plain batched PyTorch loop (DataLoader + torchvision transform, same
   preprocessing, same batch size) over the test and the val split for both models — the
   same forwards the report needs (val predictions choose the operating thresholds);
3. :func:`medaudit.pipeline.run_report` with the predictions cache off, three variants:
   ``default`` (bench + Grad-CAM + HTML/PDF/JSON), ``no-bench`` (``--no-bench``) and
   ``no-bench no-cam`` (``--no-bench --no-cam``);
4. ``bare`` again (the figure used is the mean of both bare passes);
5. :func:`medaudit.report.render_from_snapshot` of the default run's ``report.json``:
   HTML+PDF (what ``medaudit render`` does by default), HTML only, and JSON only (which
   still redraws the figures), so that figures, HTML and PDF can be told apart; then
   ``medaudit render`` as a fresh process (Python start-up and imports included), compared
   with the default run plus the one-off imports (what a CLI run costs).

How to read the output: the runs table gives each variant's wall time, its ratio to the
bare inference of test+val (target <= 1.25x for the default run) and to test alone, and
the split of the wall time into steps: ``predict``, ``bench`` and ``cam`` come from
``snapshot["run"]["timings_s"]``; ``other`` is the rest of ``run["duration_s"]`` (data
loading and duplicate scan, checkpoint loading and FLOP count, metrics with bootstrap CIs);
``write`` is the wall time after ``duration_s`` (figures, HTML, PDF, files). The render
lines give a re-render as a % of the default run (target <= 10 %).

    .venv/bin/python benchmarks/report_overhead.py                      # defaults below
    nice .venv/bin/python benchmarks/report_overhead.py --threads 1 --size 96
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling script with the shared baseline loops
from _machine import machine_info, print_machine  # noqa: E402
from predict_throughput import (  # noqa: E402
    batched_array_loop,
    batched_folder_loop,
    make_loaded,
    medaudit_workers,
    tv_transform,
)

VARIANTS = {  # name -> (bench, cam)
    "default": (True, True),
    "no-bench": (False, True),
    "no-bench no-cam": (False, False),
}


def bare_inference(loaded: list, splits: dict, size: int, batch_size: int) -> dict[str, float]:
    """Seconds of a plain batched loop per split name, summed over the models."""
    out = {}
    for name, split in splits.items():
        t = time.perf_counter()
        for ld in loaded:
            if getattr(split, "array", None) is not None:  # npz: slice the uint8 array per batch
                batched_array_loop(ld.model, split.array, size, ld.recipe.mean, ld.recipe.std, batch_size)
            else:
                tf = tv_transform(size, size, ld.recipe.mean, ld.recipe.std)
                batched_folder_loop(ld.model, split.paths, tf, batch_size, medaudit_workers(len(split)))
        out[name] = time.perf_counter() - t
    return out


def one_report(ckpts: list[Path], root: Path, out: Path, cache: Path, *, bench: bool, cam: bool,
               batch_size: int) -> tuple[float, dict]:
    from medaudit.pipeline import ReportOptions, run_report

    opts = ReportOptions(checkpoints=ckpts, data_spec=str(root), out_dir=out, device="cpu", batch_size=batch_size,
                         use_cache=False, cache_dir=cache, bench=bench, cam=cam,
                         command="benchmarks/report_overhead.py")
    t = time.perf_counter()
    snapshot, _paths = run_report(opts)
    return time.perf_counter() - t, snapshot


def step_split(wall: float, snapshot: dict) -> dict[str, float]:
    """predict / bench / cam from run.timings_s; other = rest of duration_s; write = wall - duration_s."""
    run = snapshot["run"]
    tm = run["timings_s"]
    steps = {
        "predict": sum(v for k, v in tm.items() if k.startswith("predict:")),
        "bench": tm.get("bench", 0.0),
        "cam": tm.get("cam", 0.0),
    }
    steps["other"] = run["duration_s"] - sum(steps.values())
    steps["write"] = wall - run["duration_s"]
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="resnet18,vit_tiny_patch16_224", help="two (or more) timm names")
    ap.add_argument("--size", type=int, default=128, help="demo image size = model input (px)")
    ap.add_argument("--test-per-class", type=int, default=51)
    ap.add_argument("--val-per-class", type=int, default=24)
    ap.add_argument("--train-per-class", type=int, default=50, help="only scanned (duplicates), never predicted")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--render-repeats", type=int, default=3, help="in-process re-renders per format set")
    ap.add_argument("--keep", type=Path, default=None, help="copy the default run's report folder here")
    ap.add_argument("--data", default=None, help="a data spec with test and val splits (e.g. a MedMNIST .npz) "
                    "instead of the generated demo folder; --size is then the models' input size")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="which report variants to run")
    args = ap.parse_args()

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print_machine(machine_info())
    t_start = time.perf_counter()

    t = time.perf_counter()
    import matplotlib.pyplot  # noqa: F401
    import pytorch_grad_cam  # noqa: F401
    import weasyprint  # noqa: F401

    t_imports = time.perf_counter() - t
    print(f"one-off imports of matplotlib + weasyprint + pytorch_grad_cam: {t_imports:.2f} s "
          "(every CLI run pays them; not in the figures below)")

    from medaudit.data import load_dataset, make_demo_dataset
    from medaudit.models.preprocess import Recipe
    from medaudit.report import render_from_snapshot

    with tempfile.TemporaryDirectory(prefix="medaudit-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if args.data:
            root = args.data
        else:
            root = make_demo_dataset(tmp / "demo", n_train=args.train_per_class, n_val=args.val_per_class,
                                     n_test=args.test_per_class, size=args.size)
        ds = load_dataset(str(root))
        recipe = Recipe(img_size=args.size, in_chans=3)
        archs = args.archs.split(",")
        loaded = [make_loaded(tmp, a, a, ds.class_names, ds.task, recipe, False) for a in archs]
        ckpts = [ld.path for ld in loaded]
        splits = {"test": ds.split("test"), "val": ds.split("val")}
        n = {k: len(s) for k, s in splits.items()}
        print(f"\ndata: {args.data or 'demo folder'} at {args.size} px, test {n['test']}, val {n['val']}, train {len(ds.split('train'))} "
              f"images; models {', '.join(archs)} (random init), batch {args.batch_size}, predictions cache off")

        bare_runs = [bare_inference(loaded, splits, args.size, args.batch_size)]
        print(f"bare #1: test {bare_runs[0]['test']:.2f} s, val {bare_runs[0]['val']:.2f} s")
        results = {}
        for name, (bench, cam) in ((k, VARIANTS[k]) for k in args.variants.split(",")):
            wall, snap = one_report(ckpts, root, tmp / f"out-{name.replace(' ', '_')}", tmp / "cache",
                                    bench=bench, cam=cam, batch_size=args.batch_size)
            results[name] = (wall, step_split(wall, snap))
            print(f"{name}: {wall:.2f} s, run.timings_s {snap['run']['timings_s']}, duration_s {snap['run']['duration_s']}")
        bare_runs.append(bare_inference(loaded, splits, args.size, args.batch_size))
        print(f"bare #2: test {bare_runs[1]['test']:.2f} s, val {bare_runs[1]['val']:.2f} s")
        bare_test = float(np.mean([b["test"] for b in bare_runs]))
        bare_all = float(np.mean([b["test"] + b["val"] for b in bare_runs]))

        print(f"\nbare inference (plain batched loop, {len(archs)} models, mean of 2 passes): "
              f"test+val {bare_all:.2f} s, test only {bare_test:.2f} s "
              f"({len(archs) * (n['test'] + n['val']) / bare_all:.1f} model-images/s)\n")
        print("| run | wall s | x bare (test+val) | x bare (test) | predict | bench | cam | other | write |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, (wall, st) in results.items():
            print(f"| {name} | {wall:.2f} | {wall / bare_all:.2f}x | {wall / bare_test:.2f}x | "
                  + " | ".join(f"{st[k]:.2f}" for k in ("predict", "bench", "cam", "other", "write")) + " |")
        full = results["default"][0]
        ratio = full / bare_all
        print(f"\ndefault report / bare inference (test+val): {ratio:.2f}x "
              f"(target <= 1.25x: {'met' if ratio <= 1.25 else 'NOT met'})")
        pred_ratio = min(r[1]["predict"] for r in results.values()) / bare_all
        print(f"medaudit's predict step / bare loop (same forwards): {pred_ratio:.2f}x")

        snap_path = tmp / "out-default" / "report.json"
        print()
        for label, formats in (("html+pdf", ("html", "pdf")), ("html", ("html",)), ("figures+json", ("json",))):
            dts = []
            for k in range(args.render_repeats):
                t = time.perf_counter()
                render_from_snapshot(snap_path, tmp / f"render-{label}-{k}", formats=formats)
                dts.append(time.perf_counter() - t)
            dt = float(np.median(dts))
            verdict = ("met" if dt <= 0.10 * full else "NOT met") if label == "html+pdf" else ""
            print(f"re-render from snapshot ({label}, median of {len(dts)}): {dt:.2f} s = {100 * dt / full:.1f} % of the default run "
                  f"{'(target <= 10 %: ' + verdict + ')' if verdict else ''}")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "medaudit", "render", str(snap_path), "-o", str(tmp / "render-cli")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t
        print(f"`medaudit render` (html+pdf) as a fresh process: {dt:.2f} s = {100 * dt / (full + t_imports):.1f} % "
              f"of the default run + one-off imports ({full + t_imports:.2f} s)")
        if args.keep is not None:
            shutil.copytree(tmp / "out-default", args.keep, dirs_exist_ok=True)
    print(f"\nload average after: {tuple(round(x, 2) for x in os.getloadavg())}; "
          f"wall {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
