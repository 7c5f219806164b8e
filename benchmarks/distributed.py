"""torchrun on the CPU: the same work on 1 process x 2 threads vs 2 gloo ranks x 1 thread, same run.

Two measurements, each as whole ``medaudit`` processes started the way a user starts them:

* ``predict``: ``medaudit predict --no-cache`` over an in-memory ``.npz`` split (one process with
  ``OMP_NUM_THREADS=2``) against ``torchrun --nproc-per-node 2 -m medaudit predict`` (each rank one
  thread). Reported: the pass's own wall time (``provenance.wall_s``: rank 0's shard plus the gather)
  and the whole command's, and whether the two predictions files hold the same probabilities.
* ``train``: one epoch of ``medaudit train`` (a LayerNorm ViT, global batch B) on 1 process x 2 threads
  against 2 ranks x 1 thread (B/2 each): the epoch's own time (``history[0].epoch_time_s``) and the
  command's, and the largest weight difference between the two runs.

Rounds alternate (one process, torchrun, one process, ...) so drifting load hits both; medians are
printed with the ratio torchrun / one process (below 1: torchrun is faster). On a 2-core machine
expect about parity: the point is that sharding costs little (target: overhead <= 10 %) and the
results are the same. Process start (importing torch in every rank) is in the command's time.

Usage::

    python benchmarks/distributed.py --n 4000 --img-size 32 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_info, print_machine

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], *, nproc: int, threads: int, env: dict) -> float:
    """Wall time of ``medaudit ARGV`` (``nproc`` > 1: under torchrun); raises on a non-zero exit."""
    prefix = [sys.executable, "-m", "medaudit"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), "-m", "medaudit"]
    full_env = {**os.environ, **env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "CI": "true",
                "PYTHONPATH": str(ROOT)}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        full_env.pop(k, None)
    t0 = time.perf_counter()
    proc = subprocess.run(prefix + argv, cwd=ROOT, env=full_env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:1])} (nproc {nproc}) failed:\n{proc.stderr[-3000:]}")
    return wall


def make_data(tmp: Path, n: int, n_train: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, m in (("train", n_train), ("val", max(64, n_train // 4)), ("test", n)):
        y = np.arange(m) % 3
        x = rng.integers(0, 60, size=(m, size, size), dtype=np.uint8)
        for c in range(3):
            x[y == c, :, c * size // 3:(c + 1) * size // 3] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y.reshape(-1, 1)
    path = tmp / "d.npz"
    np.savez(path, **arrays)
    return path


def make_checkpoint(tmp: Path, arch: str, size: int) -> Path:
    import torch

    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe

    torch.manual_seed(0)
    model = create_model(arch, 3, in_chans=1, img_size=size)
    path = tmp / "m.pt"
    save_checkpoint(path, model, arch=arch, class_names=["0", "1", "2"], task="multiclass",
                    recipe=Recipe(img_size=size, in_chans=1, mean=(0.5,), std=(0.25,)), small_stem=True)
    return path


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def bench_predict(tmp: Path, data: Path, ckpt: Path, args) -> dict:
    from medaudit.predictions import Predictions

    times: dict[str, list[float]] = {"one": [], "dist": []}
    passes: dict[str, list[float]] = {"one": [], "dist": []}
    probs = {}
    env = {"MEDAUDIT_CACHE": str(tmp / "cache")}
    for r in range(args.rounds):
        for kind, nproc, threads in (("one", 1, 2), ("dist", 2, 1)) if r % 2 == 0 else (("dist", 2, 1), ("one", 1, 2)):
            out = tmp / f"p-{kind}.npz"
            argv = ["predict", "--model", str(ckpt), "--data", str(data), "--classes", "0,1,2", "--batch-size",
                    str(args.batch_size), "--no-cache", "--quiet", "-o", str(out)]
            times[kind].append(run(argv, nproc=nproc, threads=threads, env=env))
            preds = Predictions.load(out)
            passes[kind].append(float(preds.provenance["wall_s"]))
            probs[kind] = preds.probs
    diff = float(np.abs(probs["one"] - probs["dist"]).max())
    return {"n": args.n, "pass_one_s": median(passes["one"]), "pass_dist_s": median(passes["dist"]),
            "cmd_one_s": median(times["one"]), "cmd_dist_s": median(times["dist"]),
            "identical": bool(np.array_equal(probs["one"], probs["dist"])), "max_abs_diff": diff}


def bench_train(tmp: Path, data: Path, args) -> dict:
    import torch

    from medaudit.models.weights import safe_torch_load

    times: dict[str, list[float]] = {"one": [], "dist": []}
    epochs: dict[str, list[float]] = {"one": [], "dist": []}
    states = {}
    for r in range(args.rounds):
        for kind, nproc, threads in (("one", 1, 2), ("dist", 2, 1)) if r % 2 == 0 else (("dist", 2, 1), ("one", 1, 2)):
            out = tmp / f"t-{kind}-{r}" / "m.pt"
            argv = ["train", "--data", str(data), "--model", args.train_arch, "--img-size", str(args.img_size),
                    "--in-chans", "1", "--epochs", "1", "--batch-size", str(args.train_batch), "--optimizer", "sgd",
                    "--lr", "0.05", "--device", "cpu", "--augment", "none", "--quiet", "-o", str(out)]
            times[kind].append(run(argv, nproc=nproc, threads=threads, env={}))
            last = safe_torch_load(out.with_name("m.last.pt"))
            epochs[kind].append(float(last["history"][0]["epoch_time_s"]))
            states[kind] = last["state_dict"]
    diff = max(float((states["one"][k].double() - states["dist"][k].double()).abs().max())
               for k in states["one"] if torch.is_floating_point(states["one"][k]))
    return {"n": args.n_train, "epoch_one_s": median(epochs["one"]), "epoch_dist_s": median(epochs["dist"]),
            "cmd_one_s": median(times["one"]), "cmd_dist_s": median(times["dist"]), "max_weight_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="test images predicted")
    ap.add_argument("--n-train", type=int, default=1024, help="training images (one epoch)")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--arch", default="resnet18", help="model of the predict pass")
    ap.add_argument("--batch-size", type=int, default=64, help="predict batch")
    ap.add_argument("--train-batch", type=int, default=64, help="global training batch")
    ap.add_argument("--train-arch", default="test_vit",
                    help="model of the training epoch (LayerNorm by default: BatchNorm statistics differ per rank "
                         "without --sync-bn, so their weights need not match)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    print_machine(machine_info())
    with tempfile.TemporaryDirectory(prefix="medaudit-dist-bench-") as d:
        tmp = Path(d)
        data = make_data(tmp, args.n, args.n_train, args.img_size)
        ckpt = make_checkpoint(tmp, args.arch, args.img_size)
        p = bench_predict(tmp, data, ckpt, args)
        t = bench_train(tmp, data, args)
    print(f"\npredict {args.arch} {args.img_size} px, {p['n']} images, batch {args.batch_size}, {args.rounds} rounds "
          "(medians):")
    print(f"  pass:    1 proc x 2 threads {p['pass_one_s']:.2f} s ({p['n'] / p['pass_one_s']:.0f} img/s), "
          f"2 ranks x 1 thread {p['pass_dist_s']:.2f} s ({p['n'] / p['pass_dist_s']:.0f} img/s): "
          f"ratio {p['pass_dist_s'] / p['pass_one_s']:.2f}")
    print(f"  command: {p['cmd_one_s']:.2f} s vs {p['cmd_dist_s']:.2f} s: ratio {p['cmd_dist_s'] / p['cmd_one_s']:.2f}")
    print(f"  probabilities identical: {p['identical']} (max |diff| {p['max_abs_diff']:.3g})")
    print(f"\ntrain {args.train_arch} {args.img_size} px, {t['n']} images, 1 epoch, global batch {args.train_batch}:")
    print(f"  epoch:   1 proc x 2 threads {t['epoch_one_s']:.2f} s, 2 ranks x 1 thread {t['epoch_dist_s']:.2f} s: "
          f"ratio {t['epoch_dist_s'] / t['epoch_one_s']:.2f}")
    print(f"  command: {t['cmd_one_s']:.2f} s vs {t['cmd_dist_s']:.2f} s: ratio {t['cmd_dist_s'] / t['cmd_one_s']:.2f}")
    print(f"  max weight difference after the epoch: {t['max_weight_diff']:.3g}")
    if args.json:
        args.json.write_text(json.dumps({"predict": p, "train": t}, indent=2))


if __name__ == "__main__":
    main()
