"""What an external cohort costs: medaudit's features pass vs a plain loop, and the shift tests' cost.

Setup: seeded random grey images (default 1000 internal + 1000 cohort, 64 px, 4 classes) as in-memory
splits and a seeded random-init ``resnet18`` (small-input stem) checkpoint; random weights do not
change timings.

Measured in one process, in this order:

1. ``bare``: a plain batched PyTorch loop (``forward_features`` + ``forward_head(pre_logits=True)``)
   over both splits: the forwards the features need, nothing else;
2. ``medaudit``: :func:`medaudit.embed.compute_features` on both splits (hook on the head, the model
   state guard, the recipe's batches);
3. ``bare`` again (the figure used is the mean of both);
4. ``shift``: :func:`medaudit.metrics.shift.shift_tests` on the saved outputs and features (BBSD,
   PCA + MMD with 500 permutations on 1000 per side, EM) — pure numpy after inference.

Printed: each wall time and the ratio bare / medaudit features (target >= 0.9x).

    .venv/bin/python benchmarks/external.py
    .venv/bin/python benchmarks/external.py --n 500 --size 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, print_machine  # noqa: E402


class _Split:
    def __init__(self, images, labels, name):
        self.array, self.labels, self.name = images, labels, name
        self.sample_ids = [f"{name}{i}" for i in range(len(labels))]
        self.metadata = None

    def __len__(self):
        return len(self.labels)

    def fingerprint(self):
        return f"bench-{self.name}-{len(self)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from medaudit.embed import compute_features
    from medaudit.metrics.shift import shift_tests
    from medaudit.models.checkpoint import load_checkpoint, save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe, iter_batches

    print_machine(machine_info())
    rng = np.random.default_rng(0)
    splits = [_Split(rng.integers(0, 256, (args.n, args.size, args.size), dtype=np.uint8),
                     rng.integers(0, 4, args.n), name) for name in ("int", "ext")]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r18.pt"
        save_checkpoint(path, create_model("resnet18", 4, in_chans=1, img_size=args.size), arch="resnet18",
                        class_names=list("abcd"), task="multiclass",
                        recipe=Recipe(img_size=args.size, in_chans=1, mean=(0.5,), std=(0.25,)), small_stem=True)
        ld = load_checkpoint(path)
    model = ld.model.eval()

    def bare():
        out = []
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in splits:
                for x, _y, _i in iter_batches(s, ld.recipe, 64):
                    out.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
        return time.perf_counter() - t0, out

    def ours():
        t0 = time.perf_counter()
        feats = [compute_features(ld, s, np.arange(len(s)), device="cpu", batch_size=64) for s in splits]
        return time.perf_counter() - t0, feats

    b1, ref = bare()
    m, feats = ours()
    b2, _ = bare()
    assert np.allclose(np.concatenate(ref), np.concatenate(feats), atol=1e-4)
    with torch.inference_mode():
        probs = [torch.softmax(model(x), 1).double().numpy() for x, _y, _i in iter_batches(splits[0], ld.recipe, 4096)]
        probs += [torch.softmax(model(x), 1).double().numpy() for x, _y, _i in iter_batches(splits[1], ld.recipe, 4096)]
    t0 = time.perf_counter()
    out = shift_tests(probs[0], probs[1], splits[0].labels, list("abcd"), features_ref=feats[0], features_new=feats[1])
    shift = time.perf_counter() - t0
    bare_s = (b1 + b2) / 2
    print(f"features of {2 * args.n} images at {args.size} px: bare loop {b1:.2f} s / {b2:.2f} s (mean {bare_s:.2f}), "
          f"medaudit {m:.2f} s -> ratio bare/medaudit {bare_s / m:.2f}x")
    print(f"shift tests (BBSD + MMD 500 permutations on {out['mmd']['n_reference']} + {out['mmd']['n_cohort']} "
          f"+ EM): {shift:.2f} s; verdict on two random samples: {out['verdict']}")


if __name__ == "__main__":
    main()
