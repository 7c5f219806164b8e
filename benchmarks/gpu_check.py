"""One GPU check (issue 21): medaudit predict vs a timm-benchmark-style bare loop, data pipeline, torchrun smoke test.

Run it through ``benchmarks/gpu_check.sh`` (under 8 minutes on one GPU; the output goes to stdout and to
``benchmarks/results/gpu-<date>.md``, whose path is printed). For each architecture (default ``resnet50``
and ``vit_base_patch16_224``, random init, saved and reloaded as medaudit checkpoints: no download), at
224 px, batch 256, all in one process so that the figures compare:

* **bare loop**: what timm's ``benchmark.py`` times. One batch already on the device (the first images of
  the in-memory split, converted on the device without medaudit's code), model and input channels-last,
  ``torch.inference_mode()``, autocast bf16 (fp16 where bf16 is unsupported), cuDNN benchmark mode,
  warm-up forwards, then timed forwards between two ``torch.cuda.synchronize()`` calls. The throughput
  ceiling of the model: no data loading, no host-device copy. Its probabilities for that batch are
  checked against medaudit's (a baseline that computes something else is no baseline): to 1e-4 in the
  fp32 dry run, which catches a 5 % error in the input scaling; under bf16 only to 1e-2.
* **medaudit, in memory**: :func:`medaudit.predict.run_inference` (what ``medaudit predict`` runs, cache
  off) over an ``.npz`` split of 224 px grey images; one warm-up pass, median of ``--rounds`` passes.
  Target: >= 0.9x the bare loop.
* **medaudit, JPEG folder**: the same over a folder of synthetic JPEGs of mixed sizes (200-640 px, L and
  RGB, as in ``predict_throughput.py``), decoded and resized by medaudit's DataLoader. Target: >= 0.7x.
* **medaudit predict, whole command**: ``python -m medaudit predict --no-cache`` once per source in a fresh
  process; its pass's own time (``provenance.wall_s``) and the command's (process start, data scan and
  hashing, CUDA start included).
* **data pipeline alone** (JPEG folder, no model): medaudit's batches (decode + resize in DataLoader
  workers, medaudit's worker count and one per CPU) vs ``torchvision.io.decode_jpeg(device="cuda")``
  (nvJPEG, batched) + resize on the GPU; both printed with the faster one named, and how far the GPU
  decoder's input is from medaudit's (grey levels).
* **torchrun smoke test**: ``torchrun --standalone --nproc-per-node 1 -m medaudit train`` for one short
  epoch of a small model on tiny data; checks the exit code, the checkpoints and the world size recorded.

``--dry-run`` runs the same code on the CPU at a tiny size (ResNet-18 and ViT-Tiny, 32 px, a few images,
fp32, the decode branch with ``device="cpu"``, gloo for torchrun) in seconds: the test suite runs it
(``tests/test_benchmarks_gpu_check.py``). The targets are only judged on a GPU.

    bash benchmarks/gpu_check.sh                      # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run --out /tmp/gpu-dry.md
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from _machine import machine_info, print_machine  # benchmarks/ is on sys.path when run as a script
from predict_throughput import make_jpeg_folder, make_loaded

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["glioma", "notumor"]  # make_jpeg_folder's classes; the npz split uses the same names
TARGETS = {"memory": 0.9, "jpeg": 0.7}  # medaudit / bare loop, from issue 21
BUDGET_S = 480  # "under 8 minutes on one GPU"
SKIPPABLE = ("commands", "pipeline", "torchrun")


# -- output ------------------------------------------------------------------------
class Tee:
    """Write to the terminal and to the results file at once (line by line, so a run cut short keeps its lines)."""

    def __init__(self, stream, path: Path):
        self.stream, self.file = stream, path.open("w", encoding="utf-8", buffering=1)

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.file.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __getattr__(self, name: str):  # isatty, encoding, fileno...: the terminal's
        return getattr(self.stream, name)


class Sections:
    """Run each measurement as a section: on a GPU a failing one is printed and the others still run
    (device time is scarce); in a dry run (the test) any failure stops the check with its traceback."""

    def __init__(self, strict: bool):
        self.strict, self.failed = strict, []

    @contextmanager
    def run(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        print(f"\n## {name}")
        try:
            yield
        except Exception as exc:  # noqa: BLE001  (reported, counted, and the exit code says so)
            if self.strict:
                raise
            self.failed.append(name)
            print(f"FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stdout)
        print(f"({name}: {time.perf_counter() - t0:.1f} s)")


# -- settings ------------------------------------------------------------------------
def settings(args) -> dict:
    """Sizes of the run: the real check on a GPU, or the tiny CPU dry run."""
    if args.dry_run:
        base = dict(device="cpu", archs=["resnet18", "vit_tiny_patch16_224"], img_size=32, batch_size=4,
                    n_memory=8, n_jpeg=8, unique_jpeg=8, warmup=1, iters=2, rounds=1, train_size=32, train_n=16,
                    train_batch=8, command_archs=1)
    else:
        base = dict(device="cuda", archs=["resnet50", "vit_base_patch16_224"], img_size=224, batch_size=256,
                    n_memory=4096, n_jpeg=3072, unique_jpeg=256, warmup=10, iters=30, rounds=3, train_size=64,
                    train_n=512, train_batch=64, command_archs=None)
    for key in ("device", "img_size", "batch_size", "n_memory", "n_jpeg", "rounds"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    if args.archs:
        base["archs"] = [a.strip() for a in args.archs.split(",") if a.strip()]
    base["skip"] = sorted({s.strip() for s in (args.skip or "").split(",") if s.strip()})
    unknown = set(base["skip"]) - set(SKIPPABLE)
    if unknown:
        raise SystemExit(f"gpu_check: --skip {','.join(sorted(unknown))}: not one of {','.join(SKIPPABLE)}")
    return base


def amp_dtype(device):
    """Autocast dtype of the bare loop: the one medaudit's ``--amp`` picks (bf16, else fp16); None on the CPU."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- data ------------------------------------------------------------------------------
def make_npz(path: Path, n: int, size: int, seed: int = 0) -> Path:
    """A test split of ``n`` grey ``size`` px uint8 images (bright disc or not) and a 2-image train split."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (np.hypot(xx - size / 2, yy - size / 2) < size / 4).astype(np.uint8) * 90
    arrays = {}
    for split, m in (("train", 2), ("test", n)):
        y = np.arange(m) % 2
        x = rng.integers(0, 120, size=(m, size, size), dtype=np.uint8)
        x[y == 1] += disc
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    np.savez(path, **arrays)
    return path


def make_jpegs(root: Path, n: int, unique: int, seed: int = 0) -> list[Path]:
    """``n`` test JPEGs under ``root/test/<class>/``: ``unique`` drawn by ``make_jpeg_folder``, the rest copies
    of those bytes under new names (decoding costs the same; drawing 3,000 would take ~90 s of one core)."""
    make_jpeg_folder(root, max(1, unique // 2), seed)
    made = sorted((root / "test").rglob("*.jpg"))
    for i in range(n - len(made)):
        src = made[i % len(made)]
        shutil.copyfile(src, src.with_name(f"copy{i:06d}.jpg"))
    return sorted((root / "test").rglob("*.jpg"))


def bare_input(array: np.ndarray, recipe, device):
    """uint8 (B, s, s) grey → normalised (B, 3, s, s) float on ``device``, written without medaudit's recipe code."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(array)).to(device).float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    mean = torch.tensor(recipe.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(recipe.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


# -- contenders ------------------------------------------------------------------------
def bare_loop(model, x, *, warmup: int, iters: int) -> tuple[float, np.ndarray]:
    """timm ``benchmark.py``-style inference loop on a batch already on its device.

    Returns (images/s, logits (B, C) float32 of the batch). Channels-last model and input,
    ``inference_mode``, autocast (bf16/fp16 on CUDA, off on the CPU), cuDNN benchmark mode
    (restored afterwards so that medaudit's passes run with torch's default), ``warmup``
    untimed forwards, then ``iters`` timed ones between two synchronisations.
    """
    import torch

    dtype = amp_dtype(x.device)
    model = model.eval().to(x.device, memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype or torch.bfloat16,
                                                    enabled=dtype is not None):
            for _ in range(warmup):
                out = model(x)
            synchronize(x.device)
            t0 = time.perf_counter()
            for _ in range(iters):
                out = model(x)
            synchronize(x.device)
            dt = time.perf_counter() - t0
    finally:
        torch.backends.cudnn.benchmark = previous
    return x.shape[0] * iters / dt, out.float().cpu().numpy()


def timed_passes(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    """One untimed warm-up call (its result is returned), then the median wall time of ``rounds`` calls."""
    out = fn()
    walls = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), out


def pipeline_rate(split, recipe, batch_size: int, workers: int, device) -> float:
    """Images/s of medaudit's own batches (decode + resize + normalise in ``workers`` DataLoader workers),
    moved to ``device``; no model."""
    from medaudit.models.preprocess import iter_batches

    t0 = time.perf_counter()
    n = 0
    for x, _y, _idx in iter_batches(split, recipe, batch_size, num_workers=workers):
        x = x.to(device, non_blocking=True)
        n += x.shape[0]
    synchronize(device)
    return n / (time.perf_counter() - t0)


def decode_jpeg_batches(paths: list[Path], recipe, batch_size: int, device) -> Iterator:
    """Batches (B, 3, s, s) on ``device``: file bytes → ``torchvision.io.decode_jpeg(list, device=...)``
    (nvJPEG on CUDA, batched) → antialiased bilinear resize and normalisation on ``device``."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    s = recipe.img_size
    mean = torch.tensor(recipe.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(recipe.std, device=device).view(1, 3, 1, 1)
    for start in range(0, len(paths), batch_size):
        data = [read_file(str(p)) for p in paths[start:start + batch_size]]
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        x = torch.cat([F.interpolate(im.unsqueeze(0).float().div_(255.0), size=(s, s), mode="bilinear",
                                     align_corners=False, antialias=True) for im in images])
        yield (x - mean) / std


def decode_rate(paths: list[Path], recipe, batch_size: int, device) -> float:
    t0 = time.perf_counter()
    n = sum(x.shape[0] for x in decode_jpeg_batches(paths, recipe, batch_size, device))
    synchronize(device)
    return n / (time.perf_counter() - t0)


def input_difference(split, paths: list[Path], recipe, batch_size: int, device) -> tuple[float, float]:
    """Mean and max |difference| in grey levels (0-255) between medaudit's first batch and the GPU decoder's."""
    import torch

    from medaudit.models.preprocess import iter_batches

    ours = next(iter(iter_batches(split, recipe, batch_size, num_workers=0)))[0]
    theirs = next(decode_jpeg_batches(paths[:batch_size], recipe, batch_size, device)).float().cpu()
    std = torch.tensor(recipe.std).view(1, 3, 1, 1)
    d = ((ours - theirs) * std * 255.0).abs()
    return float(d.mean()), float(d.max())


def predict_command(ckpt: Path, spec: str, out: Path, settings_: dict, tmp: Path, extra: list[str]) -> float:
    """Wall time of ``python -m medaudit predict --no-cache`` in a fresh process (raises on a non-zero exit)."""
    cmd = [sys.executable, "-m", "medaudit", "predict", "--model", str(ckpt), "--data", spec, "--split", "test",
           "-o", str(out), "--device", settings_["device"], "--batch-size", str(settings_["batch_size"]),
           "--no-cache", "--quiet", *extra]
    return run_process(cmd, tmp)


def run_process(cmd: list[str], tmp: Path) -> float:
    env = {**os.environ, "CI": "true", "MEDAUDIT_CACHE": str(tmp / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:5])} ... exited {done.returncode}:\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-3000:]}")
    return wall


# -- the check -------------------------------------------------------------------------
def check_arch(arch: str, cfg: dict, tmp: Path, data: dict, sections: Sections, rows: list, commands: bool) -> None:
    """Every throughput figure for one architecture; appends one summary row per source to ``rows``."""
    import torch

    from medaudit.models.preprocess import Recipe
    from medaudit.predict import run_inference
    from medaudit.predictions import Predictions, probabilities_from_logits

    dev = torch.device(cfg["device"])
    recipe = Recipe(img_size=cfg["img_size"], in_chans=3)
    ld = make_loaded(tmp, arch, arch, CLASSES, "binary", recipe, small_stem=False)
    ckpt = tmp / f"{arch}.pt"
    mem, folder = data["memory"], data["jpeg"]
    amp = dev.type == "cuda"
    B = cfg["batch_size"]

    def medaudit_pass(split, spec):
        return run_inference(ld, split, split_name="test", split_fingerprint=None, dataset_spec=spec,
                             device=str(dev), batch_size=B, amp=amp)

    bare = {}
    with sections.run(f"{arch}: bare loop (timm benchmark.py style)"):
        x = bare_input(mem.array[:B], recipe, dev)
        bare["rate"], logits = bare_loop(copy.deepcopy(ld.model), x, warmup=cfg["warmup"], iters=cfg["iters"])
        bare["probs"] = probabilities_from_logits(logits, ld.task)
        print(f"bare loop: {bare['rate']:.1f} img/s (batch {x.shape[0]}, "
              f"{cfg['iters']} timed forwards after {cfg['warmup']}, precision "
              f"{str(amp_dtype(dev)).replace('torch.', '') if amp else 'fp32'}, channels-last)")
        del x
    for source, split, spec in (("memory", mem, str(data["npz"])), ("jpeg", folder, str(data["root"]))):
        with sections.run(f"{arch}: medaudit run_inference, {source}"):
            wall, preds = timed_passes(lambda split=split, spec=spec: medaudit_pass(split, spec), cfg["rounds"])
            rate = len(split) / wall
            row = {"arch": arch, "source": source, "medaudit": rate, "bare": bare.get("rate"), "command": None}
            rows.append(row)  # before the output check, so that a failing check keeps the figure
            print(f"medaudit {source}: {rate:.1f} img/s ({len(split)} images, median of {cfg['rounds']} passes after "
                  f"a warm-up, precision {preds.provenance['precision']}, channels-last "
                  f"{preds.provenance['channels_last']})")
            if source == "memory" and "probs" in bare:
                k = len(bare["probs"])
                diff = float(np.abs(preds.probs[:k] - bare["probs"]).max())
                agree = float((preds.probs[:k].argmax(1) == bare["probs"].argmax(1)).mean())
                tol = 1e-2 if amp else 1e-4  # bf16/fp16 logits move probabilities near 0.5 by ~1e-3
                print(f"same outputs: bare loop vs medaudit on the first {k} images: max |dprob| {diff:.1e} "
                      f"(tolerance {tol:g}), argmax agreement {agree:.3f}")
                if diff > tol:
                    raise RuntimeError(f"the bare loop's probabilities differ from medaudit's by {diff:.2e}")
        if not commands:
            continue
        with sections.run(f"{arch}: medaudit predict command, {source}"):
            out = tmp / f"{arch}-{source}.npz"
            extra = ["--classes", ",".join(CLASSES)] if source == "memory" else []
            extra += [] if amp else ["--no-amp"]
            wall = predict_command(ckpt, spec, out, cfg, tmp, extra)
            p = Predictions.load(out)
            pass_s = float(p.provenance["wall_s"])
            if rows and rows[-1]["arch"] == arch and rows[-1]["source"] == source:
                rows[-1]["command"] = len(p.probs) / pass_s
            print(f"medaudit predict command {source}: pass {len(p.probs) / pass_s:.1f} img/s "
                  f"({pass_s:.2f} s), whole command {wall:.2f} s ({len(p.probs) / wall:.1f} img/s; process start, "
                  f"data scan and hashing included), device {p.provenance['device']}")


def check_pipeline(cfg: dict, data: dict, sections: Sections) -> None:
    """The JPEG data pipeline without a model: medaudit's DataLoader vs decode_jpeg on the device."""
    import torch

    from medaudit.data.scan import scan_workers
    from medaudit.models.preprocess import Recipe

    dev = torch.device(cfg["device"])
    recipe = Recipe(img_size=cfg["img_size"], in_chans=3)
    split, paths = data["jpeg"], [Path(p) for p in data["jpeg"].paths]
    rates = {}
    with sections.run("data pipeline: medaudit decode + resize (DataLoader workers)"):
        ours = scan_workers(len(split))
        for w in sorted({ours, min(16, os.cpu_count() or 1)}):
            pipeline_rate(split, recipe, cfg["batch_size"], w, dev)  # warm the page cache
            rates[f"medaudit, {w} workers"] = pipeline_rate(split, recipe, cfg["batch_size"], w, dev)
            print(f"pipeline medaudit {w} workers{' (medaudit default)' if w == ours else ''}: "
                  f"{rates[f'medaudit, {w} workers']:.1f} img/s")
    with sections.run(f"data pipeline: torchvision.io.decode_jpeg(device={dev.type!r}) + resize on {dev.type}"):
        decode_rate(paths, recipe, cfg["batch_size"], dev)  # warm-up (nvJPEG handles, page cache)
        rates[f"decode_jpeg on {dev.type}"] = decode_rate(paths, recipe, cfg["batch_size"], dev)
        mean_d, max_d = input_difference(split, paths, recipe, cfg["batch_size"], dev)
        print(f"pipeline decode_jpeg {dev.type}: {rates[f'decode_jpeg on {dev.type}']:.1f} img/s; its input differs "
              f"from medaudit's by mean {mean_d:.2f}, max {max_d:.1f} grey levels (other JPEG decoder and resize)")
    if rates:
        best = max(rates, key=rates.get)
        print(f"fastest pipeline: {best} ({rates[best]:.1f} img/s)")


def check_torchrun(cfg: dict, tmp: Path, sections: Sections) -> None:
    """``torchrun --standalone --nproc-per-node 1 -m medaudit train``: one short epoch must finish and record world size 1."""
    from medaudit.models.weights import safe_torch_load

    with sections.run("torchrun --nproc-per-node 1 -m medaudit train (smoke test)"):
        s, n = cfg["train_size"], cfg["train_n"]
        rng = np.random.default_rng(1)
        arrays = {}
        for split, m in (("train", n), ("val", max(8, n // 4))):
            y = np.arange(m) % 2
            x = rng.integers(0, 100, size=(m, s, s), dtype=np.uint8)
            x[y == 1, : s // 2] += 120
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
        np.savez(tmp / "train.npz", **arrays)
        out = tmp / "train" / "smoke.pt"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m",
               "medaudit", "train", "--data", str(tmp / "train.npz"), "--classes", ",".join(CLASSES), "--model",
               "resnet18", "--img-size", str(s), "--epochs", "1", "--batch-size", str(cfg["train_batch"]),
               "--device", cfg["device"], "--augment", "none", "--quiet", "-o", str(out)]
        wall = run_process(cmd, tmp)
        last = safe_torch_load(out.with_name("smoke.last.pt"))
        entry = last["history"][-1]
        if not out.is_file() or entry.get("world_size") != 1:
            raise RuntimeError(f"torchrun train: checkpoint {out} missing or world size {entry.get('world_size')}")
        print(f"torchrun train smoke: ok (exit 0, {n} images, 1 epoch, batch {cfg['train_batch']}, world size "
              f"{entry['world_size']}, val_auc {entry.get('val_auc')}, {wall:.1f} s)")


def summary(rows: list[dict], dry_run: bool) -> list[str]:
    """The markdown table of the run: medaudit (in process, and the command's own pass) vs the bare loop."""
    lines = ["| arch | source | medaudit img/s | bare loop img/s | medaudit / bare | target | verdict | "
             "predict command pass img/s (/ bare) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target, bare = TARGETS[r["source"]], r["bare"]
        cmd = "not run" if r["command"] is None else f"{r['command']:.1f}" + (
            f" ({r['command'] / bare:.2f}x)" if bare else "")
        if not bare:
            lines.append(f"| {r['arch']} | {r['source']} | {r['medaudit']:.1f} | — | — | >= {target}x | "
                         f"no bare loop | {cmd} |")
            continue
        ratio = r["medaudit"] / bare
        verdict = "not judged (dry run)" if dry_run else ("met" if ratio >= target else "NOT met")
        lines.append(f"| {r['arch']} | {r['source']} | {r['medaudit']:.1f} | {bare:.1f} | {ratio:.2f}x | "
                     f">= {target}x | {verdict} | {cmd} |")
    return lines


def gpu_facts(device) -> str:
    import torch

    if device.type != "cuda":
        return f"device: {device} (no GPU{'; dry run' if device.type == 'cpu' else ''})"
    p = torch.cuda.get_device_properties(device)
    return (f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}, bf16 {torch.cuda.is_bf16_supported()}, {torch.cuda.device_count()} GPUs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny CPU run of the same code (seconds)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default benchmarks/results/gpu-<date>.md; dry run: in the temp folder)")
    ap.add_argument("--device", default=None, help="default cuda (dry run: cpu)")
    ap.add_argument("--archs", default=None, help="comma-separated timm names (default resnet50,vit_base_patch16_224)")
    ap.add_argument("--img-size", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--n-memory", type=int, default=None, help="images of the in-memory (.npz) split")
    ap.add_argument("--n-jpeg", type=int, default=None, help="images of the JPEG folder")
    ap.add_argument("--rounds", type=int, default=None, help="timed medaudit passes per source")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--skip", default=None, help=f"comma-separated parts to leave out: {', '.join(SKIPPABLE)}")
    args = ap.parse_args(argv)
    cfg = settings(args)
    today = datetime.date.today().isoformat()
    out = args.out or (Path(tempfile.gettempdir()) / f"medaudit-gpu-check-dry-{today}.md" if args.dry_run
                       else ROOT / "benchmarks" / "results" / f"gpu-{today}.md")
    out.parent.mkdir(parents=True, exist_ok=True)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dev = torch.device(cfg["device"])
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --dry-run for the CPU check, or --device cpu", file=sys.stderr)
        return 2
    tee = Tee(sys.stdout, out)
    sys.stdout = tee
    t0 = time.perf_counter()
    sections = Sections(strict=args.dry_run)
    rows: list[dict] = []
    data = None
    try:
        print(f"# GPU check{' (DRY RUN, CPU, tiny sizes: figures mean nothing)' if args.dry_run else ''}, {today}\n")
        print(f"command: bash benchmarks/gpu_check.sh {' '.join(argv if argv is not None else sys.argv[1:])}")
        print_machine(machine_info())
        print(gpu_facts(dev))
        print(f"settings: {', '.join(f'{k} {v}' for k, v in cfg.items())}")
        with tempfile.TemporaryDirectory(prefix="medaudit-gpu-check-") as d:
            tmp = Path(d)
            from medaudit.data import load_dataset

            with sections.run("data"):
                npz = make_npz(tmp / "memory.npz", cfg["n_memory"], cfg["img_size"])
                root = tmp / "jpeg"
                make_jpegs(root, cfg["n_jpeg"], min(cfg["unique_jpeg"], cfg["n_jpeg"]))
                data = {"npz": npz, "root": root,
                        "memory": load_dataset(str(npz), classes=CLASSES).split("test"),
                        "jpeg": load_dataset(str(root)).split("test")}
                print(f"in memory: {len(data['memory'])} grey {cfg['img_size']} px images ({npz.name}); JPEG folder: "
                      f"{len(data['jpeg'])} files 200-640 px (L and RGB, {min(cfg['unique_jpeg'], cfg['n_jpeg'])} "
                      "distinct)")
            n_cmd = cfg["command_archs"]
            for i, arch in enumerate(cfg["archs"] if data is not None else []):
                commands = "commands" not in cfg["skip"] and (n_cmd is None or i < n_cmd)
                check_arch(arch, cfg, tmp, data, sections, rows, commands)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            if data is not None and "pipeline" not in cfg["skip"]:
                check_pipeline(cfg, data, sections)
            if "torchrun" not in cfg["skip"]:
                check_torchrun(cfg, tmp, sections)
        print("\n## Summary\n")
        print("\n".join(summary(rows, args.dry_run)))
        wall = time.perf_counter() - t0
        print(f"\nwall {wall:.0f} s{' (over the 8-minute budget)' if wall > BUDGET_S and not args.dry_run else ''}; "
              f"failed sections: {', '.join(sections.failed) or 'none'}; load average after "
              f"{tuple(round(x, 2) for x in os.getloadavg())}")
        print(f"results written to {out}")
    finally:
        sys.stdout = tee.stream
        tee.close()
    return 1 if sections.failed else 0


if __name__ == "__main__":
    sys.exit(main())
