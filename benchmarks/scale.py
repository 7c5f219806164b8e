"""Does a report's cost grow once with the data? Whole processes over 2k and 10k (and 50k) PNGs.

For each size N this builds a synthetic image folder (64 px grey PNGs, ``train``/``val``/``test``
= 60/20/20 %, two classes, file mtimes set 10 min back so the hash cache may trust them) and a
tiny checkpoint (ResNet-18 with the small stem, 16 px input), then runs, each as its own
process (wall time; CPU time and peak RSS from ``os.wait4``'s rusage of that process tree; the
parent imports only numpy and Pillow, whose ~40 MB a forked child starts with and so counts):

* ``cold``   ``medaudit report --no-bench --no-cam --format json --bootstrap 200`` with an empty
  cache folder (``MEDAUDIT_CACHE``): train decoded and hashed, test and val (calibration) hashed
  from the decode their inference pass makes (each image decoded once);
* ``warm``   the same command again: predictions cached, image hashes cached (nothing decoded);
* ``bare``   a plain batched loop over the same test and val images (``Image.open`` →
  torchvision transform → ``DataLoader`` with medaudit's worker count → ``model`` under
  ``inference_mode``; :func:`predict_throughput.batched_folder_loop`);
* ``decode`` one decode (``Image.open(...).convert("L")``) of every train image.

Printed: a table per N and run (wall, CPU, peak RSS), ``cold / (bare + decode)`` (target
<= 1.3) and ``warm / cold`` (target <= 0.10) in wall and CPU time, and the marginal cost per
extra image between sizes, where each process's fixed cost (interpreter, torch/timm imports,
figures: seconds) cancels. CPU time is the figure to trust on a shared machine (other
processes stretch wall time, not CPU time). The smallest size keeps >= 257 test images so that
every size runs DataLoader workers (a forked worker's RSS counts the parent's shared pages, so
crossing that threshold moves peak RSS by a few hundred MB that are not new memory).

    .venv/bin/python benchmarks/scale.py            # 2k and 10k
    .venv/bin/python benchmarks/scale.py --full     # 2k, 10k and 50k
    .venv/bin/python benchmarks/scale.py --sizes 2000,20000 --keep /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PY = sys.executable
FRACTIONS = (("train", 0.6), ("val", 0.2), ("test", 0.2))


def make_folder(root: Path, n: int, side: int = 64, seed: int = 0) -> dict[str, int]:
    """n smooth-ish grey PNGs (a gradient, a blob, noise) in train/val/test x {a, b}; mtimes 10 min back."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    counts, done = {}, 0
    for k, (split, frac) in enumerate(FRACTIONS):
        m = n - done if k == len(FRACTIONS) - 1 else int(round(n * frac))
        counts[split] = m
        done += m
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(m):
            cx, cy = rng.uniform(10, side - 10, 2)
            blob = 90 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rng.uniform(3, 9) ** 2))
            img = 40 + xx * rng.uniform(0.2, 1.2) + blob + rng.normal(0, 6, (side, side))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / split / "ab"[i % 2] / f"{i:06d}.png")
    past = time.time_ns() - 600 * 10**9
    for p in root.rglob("*.png"):
        os.utime(p, ns=(past, past))
    return counts


def make_checkpoint(path: Path) -> None:
    import torch

    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe

    torch.manual_seed(0)
    model = create_model("resnet18", 2, in_chans=3, img_size=16)
    save_checkpoint(path, model, arch="resnet18", class_names=["a", "b"], task="binary",
                    recipe=Recipe(img_size=16, in_chans=3), small_stem=True)


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Wall seconds, CPU seconds (user + system, the child and the children it reaped: DataLoader and
    scan workers) and peak RSS (MiB, the largest of that process tree) of one child, via wait4."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out.decode(errors='replace')[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "rss_mb": round(usage.ru_maxrss / 1024, 1)}


def _bare(root: str, ckpt: str) -> None:
    """Child: the plain batched loop over the splits a report infers (test, and val for calibration)."""
    sys.path.insert(0, str(HERE))
    from PIL import Image
    from predict_throughput import batched_folder_loop, medaudit_workers, tv_transform

    from medaudit.models.checkpoint import load_checkpoint

    ld = load_checkpoint(ckpt)
    for split in ("test", "val"):
        paths = sorted(Path(root, split).rglob("*.png"))
        with Image.open(paths[0]) as im:
            side = im.size[0]
        tf = tv_transform(ld.recipe.img_size, side, ld.recipe.mean, ld.recipe.std)
        probs = batched_folder_loop(ld.model, paths, tf, 64, medaudit_workers(len(paths)))
        assert probs.shape == (len(paths), 2)


def _decode(root: str) -> None:
    """Child: one decode of every train image (the split a report reads but does not infer)."""
    from PIL import Image

    for p in sorted(Path(root, "train").rglob("*.png")):
        with Image.open(p) as im:
            im.convert("L").load()


def one_size(n: int, work: Path, ckpt: Path) -> dict:
    root = work / f"n{n}"
    t = time.perf_counter()
    counts = make_folder(root, n)
    gen = time.perf_counter() - t
    cache = work / f"cache{n}"
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, MEDAUDIT_CACHE=str(cache), CI="true", MEDAUDIT_QUIET="1")
    report = [PY, "-m", "medaudit", "report", "--models", str(ckpt), "--data", str(root), "--split", "test",
              "--no-bench", "--no-cam", "--format", "json", "--bootstrap", "200", "--device", "cpu", "--quiet"]
    runs = {"cold": timed(report + ["--out", str(work / f"rep{n}a")], env),
            "warm": timed(report + ["--out", str(work / f"rep{n}b")], env),
            "bare": timed([PY, __file__, "--_bare", str(root), str(ckpt)], env),
            "decode": timed([PY, __file__, "--_decode", str(root)], env)}
    out = {"n": n, **{f"n_{k}": v for k, v in counts.items()}, "generate_s": round(gen, 1), **runs,
           "load_avg_1min": round(os.getloadavg()[0], 2)}
    for kind in ("wall_s", "cpu_s"):
        base = runs["bare"][kind] + runs["decode"][kind]
        out[f"cold_over_bare_plus_decode_{kind[:-2]}"] = round(runs["cold"][kind] / base, 2)
        out[f"warm_over_cold_{kind[:-2]}"] = round(runs["warm"][kind] / runs["cold"][kind], 3)
    print(json.dumps(out), flush=True)
    return out


def _setup(ckpt: str) -> None:
    """Child: print the machine and write the checkpoint (the parent stays free of torch, since a
    forked child starts with the parent's memory and wait4's peak RSS would count it)."""
    sys.path.insert(0, str(HERE))
    from _machine import machine_info, print_machine

    print_machine(machine_info())
    make_checkpoint(Path(ckpt))


def summary(rows: list[dict]) -> None:
    """The table (wall and CPU per run), ratios, and the marginal per-image costs between sizes."""
    print("\n| N | run | wall s | CPU s | peak RSS MB | CPU ms/img |\n|---|---|---|---|---|---|")
    for r in rows:
        for k in ("cold", "warm", "bare", "decode"):
            print(f"| {r['n']} | {k} | {r[k]['wall_s']} | {r[k]['cpu_s']} | {r[k]['rss_mb']} | "
                  f"{1000 * r[k]['cpu_s'] / r['n']:.2f} |")
    for r in rows:
        print(f"N={r['n']}: cold/(bare+decode) {r['cold_over_bare_plus_decode_wall']} wall, "
              f"{r['cold_over_bare_plus_decode_cpu']} CPU (target <= 1.3); warm/cold {r['warm_over_cold_wall']} wall, "
              f"{r['warm_over_cold_cpu']} CPU (target <= 0.10); load {r['load_avg_1min']}")
    for a, b in zip(rows, rows[1:]):
        dn = b["n"] - a["n"]
        parts = []
        for kind in ("wall_s", "cpu_s"):
            cold = (b["cold"][kind] - a["cold"][kind]) / dn
            base = (b["bare"][kind] + b["decode"][kind] - a["bare"][kind] - a["decode"][kind]) / dn
            warm = (b["warm"][kind] - a["warm"][kind]) / dn
            parts.append(f"{kind[:-2]}: cold {1000 * cold:.2f} ms, bare+decode {1000 * base:.2f} ms "
                         f"(ratio {cold / base:.2f}), warm {1000 * warm:.2f} ms ({warm / cold:.3f} of cold)")
        print(f"marginal cost per extra image {a['n']} -> {b['n']} (fixed process costs cancel): " + "; ".join(parts))
        print(f"peak RSS growth {a['n']} -> {b['n']}: cold {b['cold']['rss_mb'] - a['cold']['rss_mb']:+.1f} MB, "
              f"warm {b['warm']['rss_mb'] - a['warm']['rss_mb']:+.1f} MB, bare "
              f"{b['bare']['rss_mb'] - a['bare']['rss_mb']:+.1f} MB")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_setup":
        return _setup(sys.argv[2])
    if len(sys.argv) > 1 and sys.argv[1] == "--_bare":
        return _bare(sys.argv[2], sys.argv[3])
    if len(sys.argv) > 1 and sys.argv[1] == "--_decode":
        return _decode(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="comma-separated image counts (default 2000,10000)")
    ap.add_argument("--full", action="store_true", help="2000,10000,50000")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    sizes = [int(s) for s in (args.sizes or ("2000,10000,50000" if args.full else "2000,10000")).split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="medaudit-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ckpt = work / "tiny.pt"
        subprocess.run([PY, __file__, "--_setup", str(ckpt)], check=True)
        print(f"load average before: {os.getloadavg()}", flush=True)
        rows = [one_size(n, work, ckpt) for n in sizes]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    summary(rows)


if __name__ == "__main__":
    main()
