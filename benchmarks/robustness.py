"""What a corruption sweep costs: medaudit's sweep vs the same forwards in a plain loop.

Setup: seeded random grey images (default 500 of 64 px, 4 classes) as an in-memory split, and two
seeded random-init checkpoints (``resnet18`` with the small-input stem and ``vit_tiny_patch16_224``
built for the input size); random weights do not change timings. Corruptions: 10 of the registry
(default) x 5 severities = 50 cells.

Measured in one process, in this order:

1. ``corrupt``: every cell's corrupted copy of the images (:func:`medaudit.data.corruptions.corrupt_batch`),
   kept in memory as the bare loop's input;
2. ``bare``: a plain batched PyTorch loop (slice, convert, resize, normalise, forward) over every
   pre-corrupted array for both models — the forwards a sweep needs, nothing else;
3. ``medaudit``: :func:`medaudit.sweep.run_sweep` with the predictions cache off (corruption,
   forwards through predict_cached, paired bootstrap of every cell, the block);
4. ``bare`` again (the figure used is the mean of both).

Printed: each wall time, the ratio bare forwards / medaudit sweep (target >= 0.9x: the sweep costs
at most ~10 % more than the forwards alone, corruption included), and the corruption share of the
sweep (how much of it is generating corruptions).

    .venv/bin/python benchmarks/robustness.py                       # defaults below
    .venv/bin/python benchmarks/robustness.py --n 200 --size 32 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, print_machine  # noqa: E402
from predict_throughput import batched_array_loop, make_loaded  # noqa: E402

CORRUPTIONS = ("gaussian_noise", "shot_noise", "gaussian_blur", "motion_blur", "contrast_down", "brightness",
               "gamma", "jpeg", "pixelate", "bias_field")
CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    args = ap.parse_args()

    import torch

    from medaudit.data.base import Split
    from medaudit.data.corruptions import corrupt_batch
    from medaudit.models.preprocess import Recipe
    from medaudit.sweep import run_sweep

    if args.threads:
        torch.set_num_threads(args.threads)
    print_machine(machine_info())
    corruptions = tuple(args.corruptions.split(","))
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), args.n // 4)
    images = rng.integers(0, 256, (len(labels), args.size, args.size), dtype=np.uint8)
    split = Split(name="test", sample_ids=[f"test/{i}" for i in range(len(labels))], labels=labels,
                  class_names=CLASSES, array=images)
    recipe = Recipe(img_size=args.size, in_chans=3)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = [make_loaded(Path(tmp), "resnet18", "resnet18", CLASSES, "multiclass", recipe, True),
                  make_loaded(Path(tmp), "vit_tiny", "vit_tiny_patch16_224", CLASSES, "multiclass", recipe, False)]
        from medaudit.predict import run_inference

        clean = [run_inference(ld, split, split_name="test", split_fingerprint=None, dataset_spec="bench",
                               device=args.device, batch_size=args.batch_size) for ld in loaded]
        cells = [(c, s) for c in corruptions for s in range(1, 6)]
        t = time.perf_counter()
        arrays = [corrupt_batch(images, split.sample_ids, c, s) for c, s in cells]
        t_corrupt = time.perf_counter() - t

        def bare() -> float:
            t0 = time.perf_counter()
            for ld in loaded:
                model = ld.model.to(args.device)
                for a in arrays:
                    batched_array_loop(model, a, args.size, ld.recipe.mean, ld.recipe.std, args.batch_size)
            return time.perf_counter() - t0

        b1 = bare()
        t = time.perf_counter()
        run_sweep(loaded, ["resnet18", "vit_tiny"], split, clean, corruptions=corruptions, n_samples=args.n,
                  negative_classes=["notumor"], n_bootstrap=1000, use_cache=False, dataset_spec="bench",
                  device=args.device, batch_size=args.batch_size, cache_dir=Path(tmp) / "cache")
        t_sweep = time.perf_counter() - t
        b2 = bare()
    t_bare = (b1 + b2) / 2
    n_fwd = len(cells) * len(loaded) * len(labels)
    print(f"sweep: {len(corruptions)} corruptions x 5 severities x {len(labels)} images x {len(loaded)} models "
          f"= {n_fwd} forwards at {args.size} px, batch {args.batch_size}, device {args.device}")
    print(f"corrupt (all cells once)   {t_corrupt:8.2f} s  ({1e3 * t_corrupt / (len(cells) * len(labels)):.3f} ms/image)")
    print(f"bare forwards              {t_bare:8.2f} s  (passes {b1:.2f} s, {b2:.2f} s)")
    print(f"medaudit sweep             {t_sweep:8.2f} s")
    print(f"ratio bare / medaudit      {t_bare / t_sweep:8.2f}x  (target >= 0.9x)")
    print(f"corruption share of sweep  {100 * t_corrupt / t_sweep:7.1f} %")


if __name__ == "__main__":
    main()
