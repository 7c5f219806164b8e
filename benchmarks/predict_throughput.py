"""Inference throughput of medaudit (``run_inference``, cache off) vs two plain PyTorch loops.

Three ways to get class probabilities for every image of one split, with the same model
object, the same data, the same batch size and the same preprocessing (uint8 → [0, 1] →
optional antialiased bilinear resize → grey repeated to 3 channels → ImageNet
normalisation), all in eval mode on the CPU:

* ``medaudit``    :func:`medaudit.predict.run_inference` on a checkpoint saved and reloaded
  with :func:`medaudit.models.checkpoint.load_checkpoint` (data conversion, softmax and the
  ``Predictions`` object included; no cache);
* ``batched``     a minimal batched loop written directly against torch under
  ``torch.inference_mode()`` (npz: slice the uint8 array per batch; folder: a
  ``Dataset`` of ``Image.open`` + torchvision transform behind a ``DataLoader`` with the
  same number of workers medaudit picks);
* ``per-sample``  one image at a time through a ``torchvision.transforms`` pipeline and
  ``model(x.unsqueeze(0))`` under ``torch.no_grad()``, as notebooks write it.

Two sources: (i) an ``.npz`` split (PneumoniaMNIST test, 624 images at 28 px, ResNet-18
"(28)" small stem, when ``../shared/data`` is present; else a synthetic npz of the same
shape) and (ii) an image folder of PNGs (medaudit's demo data, 64 px; the model keeps the
standard ImageNet stem there so that decoding and loading are a visible share of the time).

The three contenders run interleaved (the order rotates every round) after one untimed
warm-up round, which also checks that all three give the same probabilities. Read the
output as: images/s per contender (median over rounds, [min-max]), then the paired ratios
medaudit/batched (target >= 1.0x) and medaudit/per-sample (target >= 3x), each the median of
the per-round ratios. The machine, torch threads and the load average are printed first;
on a shared machine, only compare figures within one run.

    .venv/bin/python benchmarks/predict_throughput.py                  # defaults below
    nice .venv/bin/python benchmarks/predict_throughput.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _machine import machine_info, print_machine  # noqa: E402  (benchmarks/ is on sys.path when run)

PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"


# -- models ------------------------------------------------------------------------
def make_loaded(tmp: Path, name: str, arch: str, class_names: list[str], task: str, recipe, small_stem: bool,
                seed: int = 0):
    """Random-init model written as a medaudit checkpoint and loaded back (what `predict` runs).

    The init is seeded (inside ``torch.random.fork_rng``, so the global RNG is left as it
    was) so that every run audits the same weights and hence writes the same report.
    """
    import torch

    from medaudit.models.checkpoint import load_checkpoint, save_checkpoint
    from medaudit.models.factory import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(arch, len(class_names), in_chans=recipe.in_chans, img_size=recipe.img_size,
                             small_stem=small_stem)
    path = save_checkpoint(tmp / f"{name}.pt", model, arch=arch, class_names=class_names, task=task,
                           recipe=recipe, small_stem=small_stem)
    return load_checkpoint(path)


# -- baselines (independent of medaudit.models.preprocess on purpose) -----------------------
def medaudit_workers(n: int) -> int:
    """The DataLoader worker count medaudit.models.preprocess.iter_batches picks for a file split of n images."""
    return min(4, os.cpu_count() or 1) if n > 256 else 0


def tv_transform(img_size: int, src_size: int | None, mean, std):
    """torchvision pipeline for an RGB PIL image; resizes (antialiased bilinear) only when sizes differ."""
    from torchvision import transforms as T

    steps = [T.ToTensor()]
    if src_size != img_size:
        steps.append(T.Resize((img_size, img_size), interpolation=T.InterpolationMode.BILINEAR, antialias=True))
    steps.append(T.Normalize(mean, std))
    return T.Compose(steps)


def batched_array_loop(model, array: np.ndarray, img_size: int, mean, std, batch_size: int) -> np.ndarray:
    """uint8 (N, H, W[, 3]) → probs (N, C): slice, convert and forward one batch at a time."""
    import torch
    import torch.nn.functional as F

    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(array), batch_size):
            x = torch.from_numpy(array[start : start + batch_size]).float().div_(255.0)
            x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
            if x.shape[-1] != img_size or x.shape[-2] != img_size:
                x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
            x = x.expand(-1, 3, -1, -1)
            out.append(model((x - m) / s).softmax(1))
    return torch.cat(out).numpy()


class _Files:
    """Minimal torch-style dataset: RGB PIL image → tensor through a torchvision transform."""

    def __init__(self, paths, transform):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB"))


def batched_folder_loop(model, paths, transform, batch_size: int, workers: int) -> np.ndarray:
    """Image files → probs (N, C) through a DataLoader (batched forwards)."""
    import torch

    loader = torch.utils.data.DataLoader(_Files(paths, transform), batch_size=batch_size, shuffle=False,
                                         num_workers=workers)
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(x).softmax(1) for x in loader]).numpy()


def per_sample_loop(model, images: Callable[[], object], transform) -> np.ndarray:
    """One PIL image at a time: transform, ``model(x.unsqueeze(0))``; ``images()`` yields RGB PIL images."""
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for img in images():
            out.append(model(transform(img).unsqueeze(0)).softmax(1))
    return torch.cat(out).numpy()


# -- timing ------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (DataLoader workers), in seconds."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_interleaved(fns: dict[str, Callable[[], np.ndarray]], repeats: int, *, log=print) -> tuple[dict, dict]:
    """One untimed warm-up round (its outputs are returned), then ``repeats`` rounds in rotating order.

    Returns ``({name: {"wall": [s per round], "cpu": [s per round]}}, {name: warm-up output})``. CPU
    time (process + reaped DataLoader workers) is less sensitive than wall time to other
    work on a shared machine, but misses threads' idle waits; both are reported.
    """
    names = list(fns)
    outputs = {}
    for n in names:
        t = time.perf_counter()
        outputs[n] = fns[n]()
        log(f"  warm-up {n}: {time.perf_counter() - t:.2f} s")
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            c, t = cpu_seconds(), time.perf_counter()
            fns[n]()
            times[n]["wall"].append(time.perf_counter() - t)
            times[n]["cpu"].append(cpu_seconds() - c)
        log(f"  round {r + 1}/{repeats}: " + ", ".join(
            f"{n} {times[n]['wall'][-1]:.2f} s (cpu {times[n]['cpu'][-1]:.2f})" for n in names))
    return times, outputs


def paired(times: dict, other: str, kind: str, ref: str = "medaudit") -> np.ndarray:
    """Per-round time(other) / time(ref): > 1 means medaudit is faster."""
    return np.asarray(times[other][kind]) / np.asarray(times[ref][kind])


def summarize(times: dict, n_images: int, ref: str = "medaudit") -> list[str]:
    """Lines of a markdown table: images/s (median [min-max]) and paired speed-ups of ref, wall and CPU."""
    lines = ["| contender | images/s (wall) median [min-max] | wall s/round | CPU s/round | "
             "medaudit speed-up, wall (paired median [min-max]) | medaudit speed-up, CPU |",
             "|---|---|---|---|---|---|"]
    for n, tt in times.items():
        rates = n_images / np.asarray(tt["wall"])
        if n == ref:
            ratio = ratio_cpu = "—"
        else:
            r, rc = paired(times, n, "wall", ref), paired(times, n, "cpu", ref)
            ratio = f"{np.median(r):.2f}x [{r.min():.2f}-{r.max():.2f}]"
            ratio_cpu = f"{np.median(rc):.2f}x [{rc.min():.2f}-{rc.max():.2f}]"
        lines.append(f"| {n} | {np.median(rates):.1f} [{rates.min():.1f}-{rates.max():.1f}] | "
                     f"{np.median(tt['wall']):.2f} | {np.median(tt['cpu']):.2f} | {ratio} | {ratio_cpu} |")
    return lines


def check_same(outputs: dict[str, np.ndarray]) -> str:
    """Max |Δprob| of each contender against medaudit, and argmax agreement (a wrong baseline is no baseline)."""
    ref = outputs["medaudit"]
    parts = []
    for n, p in outputs.items():
        if n == "medaudit":
            continue
        if p.shape != ref.shape:
            raise SystemExit(f"{n}: output shape {p.shape} differs from medaudit's {ref.shape}")
        diff = float(np.abs(p - ref).max())
        agree = float((p.argmax(1) == ref.argmax(1)).mean())
        if diff > 1e-3:
            raise SystemExit(f"{n}: probabilities differ from medaudit's by up to {diff:.2e}; preprocessing differs")
        parts.append(f"{n}: max |dprob| {diff:.1e}, argmax agreement {agree:.3f}")
    return "; ".join(parts)


# -- sources -----------------------------------------------------------------------
def npz_source(tmp: Path, npz: Path | None, seed: int) -> tuple[Path, str]:
    """The PneumoniaMNIST file if present, else a synthetic npz of the same shape (624 test images)."""
    if npz is not None and npz.is_file():
        return npz, f"{npz} (test split)"
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 64), ("val", 32), ("test", 624)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=n)
    path = tmp / "synthetic.npz"
    np.savez(path, **arrays)
    return path, f"synthetic npz ({npz} not found): 624 random 28x28 uint8 test images"


def bench_npz(args, tmp: Path) -> None:
    from PIL import Image

    from medaudit.data import load_dataset
    from medaudit.models.preprocess import Recipe
    from medaudit.predict import run_inference

    path, desc = npz_source(tmp, args.npz, args.seed)
    ds = load_dataset(str(path))
    split = ds.split("test")
    recipe = Recipe(img_size=args.img_size, in_chans=3)
    small = args.img_size <= 64
    ld = make_loaded(tmp, "npz_model", args.arch, ds.class_names, ds.task, recipe, small)
    src_size = split.array.shape[1]
    tf = tv_transform(args.img_size, src_size, recipe.mean, recipe.std)
    print(f"\n## (i) npz: {desc}\n{len(split)} images {src_size} px → {args.img_size} px, {args.arch} "
          f"(small stem: {small}), batch {args.batch_size}")
    fns = {
        "medaudit": lambda: run_inference(ld, split, split_name="test", split_fingerprint="bench", dataset_spec=str(path),
                                          device="cpu", batch_size=args.batch_size, amp=False).probs,
        "batched": lambda: batched_array_loop(ld.model, split.array, args.img_size, recipe.mean, recipe.std,
                                              args.batch_size),
        "per-sample": lambda: per_sample_loop(
            ld.model, lambda: (Image.fromarray(a).convert("RGB") for a in split.array), tf),
    }
    report(fns, len(split), args.repeats)


def bench_folder(args, tmp: Path) -> None:
    from PIL import Image

    from medaudit.data import load_dataset, make_demo_dataset
    from medaudit.models.preprocess import Recipe
    from medaudit.predict import run_inference

    root = make_demo_dataset(tmp / "demo", n_train=1, n_val=1, n_test=args.folder_per_class, size=args.folder_size)
    ds = load_dataset(str(root))
    split = ds.split("test")
    recipe = Recipe(img_size=args.folder_size, in_chans=3)
    ld = make_loaded(tmp, "folder_model", args.arch, ds.class_names, ds.task, recipe, False)
    tf = tv_transform(args.folder_size, args.folder_size, recipe.mean, recipe.std)
    workers = medaudit_workers(len(split))

    def pil_images():
        for p in split.paths:
            with Image.open(p) as im:
                yield im.convert("RGB")

    print(f"\n## (ii) image folder: demo data, {len(split)} PNG images {args.folder_size} px (grey), {args.arch} "
          f"(standard stem), batch {args.batch_size}, DataLoader workers {workers} (medaudit's rule, both batched)")
    fns = {
        "medaudit": lambda: run_inference(ld, split, split_name="test", split_fingerprint="bench", dataset_spec=str(root),
                                          device="cpu", batch_size=args.batch_size, amp=False).probs,
        "batched": lambda: batched_folder_loop(ld.model, split.paths, tf, args.batch_size, workers),
        "per-sample": lambda: per_sample_loop(ld.model, pil_images, tf),
    }
    report(fns, len(split), args.repeats)


# -- (iii) JPEG folder, whole processes, cold --------------------------------------
def make_jpeg_folder(root: Path, n_per_class: int, seed: int = 0) -> None:
    """Synthetic brain-MRI-like JPEGs of mixed sizes (200-640 px) and modes (2/3 L, 1/3 RGB), q 90."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in ("glioma", "notumor"):
        (root / "test" / c).mkdir(parents=True, exist_ok=True)
        (root / "train" / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class + 1):
            w, h = (int(v) for v in rng.integers(200, 641, 2))
            yy, xx = np.mgrid[0:h, 0:w]
            r = np.hypot((xx - w / 2) / (0.4 * w), (yy - h / 2) / (0.45 * h))
            img = np.where(r < 1, 120 + 60 * np.cos(9 * r), 5) + rng.normal(0, 8, (h, w))
            if c == "glioma":
                cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
                img += 80 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.06 * w) ** 2))
            g = np.clip(img, 0, 255).astype(np.uint8)
            im = Image.fromarray(g) if i % 3 else Image.fromarray(np.stack([g, g, (g * 0.9).astype(np.uint8)], -1))
            im.save(root / ("train" if i == n_per_class else "test") / c / f"{i:05d}.jpg", quality=90)


def careful_loop(root: str, ckpt: str, out: str, batch_size: int, workers: int) -> None:
    """Child: the careful minimal loop (ImageFolder, T.Resize((s, s)), DataLoader, channels-last, inference_mode)."""
    import torch
    from torchvision import datasets
    from torchvision import transforms as T

    from medaudit.models.checkpoint import load_checkpoint

    ld = load_checkpoint(ckpt)
    s = ld.recipe.img_size
    tf = T.Compose([T.Resize((s, s)), T.ToTensor(), T.Normalize(ld.recipe.mean, ld.recipe.std)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(Path(root) / "test"), tf), batch_size=batch_size,
                                         num_workers=workers)
    model = ld.model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        probs = [model(x.contiguous(memory_format=torch.channels_last)).softmax(1) for x, _ in loader]
    np.save(out, torch.cat(probs).numpy())


def _timed_process(cmd: list[str], env: dict) -> float:
    import subprocess

    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall


def bench_jpeg(args, tmp: Path) -> None:
    """``medaudit predict`` (empty caches: inference, hashing from the same decode) vs the careful loop, each a
    whole process. With ``jpeg_draft`` the pass decodes drafted pixels, so the split is hashed by a scan of its own."""
    import sys

    from medaudit.models.preprocess import Recipe
    from medaudit.predictions import Predictions

    root = tmp / "jpeg"
    make_jpeg_folder(root, args.jpeg_per_class, args.seed)
    n = 2 * args.jpeg_per_class
    recipe = Recipe(img_size=args.jpeg_size, in_chans=3, resize_backend="pil")  # torchvision's Resize on PIL
    make_loaded(tmp, "jpeg_model", args.arch, ["glioma", "notumor"], "binary", recipe, False)
    ckpt = tmp / "jpeg_model.pt"
    # The same weights (same seed) with the recipe's JPEG draft decoding on (Recipe.jpeg_draft).
    make_loaded(tmp, "jpeg_draft", args.arch, ["glioma", "notumor"], "binary",
                Recipe(img_size=args.jpeg_size, in_chans=3, resize_backend="pil", jpeg_draft=True), False)
    workers = 2
    print(f"\n## (iii) JPEG folder, whole processes, cold: {n} synthetic JPEGs 200-640 px (L and RGB) -> "
          f"{args.jpeg_size} px, {args.arch}, batch {args.batch_size}; careful loop: ImageFolder + T.Resize((s, s)) + "
          f"DataLoader({workers} workers) + channels-last + inference_mode; medaudit predict with an empty cache "
          "folder each round (inference, each image hashed from the decode that feeds the model)")
    walls: dict[str, list[float]] = {"medaudit predict": [], "careful loop": [], "medaudit predict, jpeg_draft": []}
    for r in range(args.repeats):
        cache = tmp / f"cache{r}"
        env = dict(os.environ, MEDAUDIT_CACHE=str(cache), CI="true", MEDAUDIT_QUIET="1")
        cmds = {
            "medaudit predict": [sys.executable, "-m", "medaudit", "predict", "--model", str(ckpt), "--data", str(root),
                                 "--split", "test", "-o", str(tmp / f"m{r}.npz"), "--device", "cpu", "--batch-size",
                                 str(args.batch_size), "--quiet"],
            "careful loop": [sys.executable, __file__, "--_careful", str(root), str(ckpt), str(tmp / f"c{r}.npy"),
                             str(args.batch_size), str(workers)],
        }
        cmds["medaudit predict, jpeg_draft"] = [str(tmp / "jpeg_draft.pt") if c == str(ckpt) else
                                                str(tmp / f"d{r}.npz") if c == str(tmp / f"m{r}.npz") else c
                                                for c in cmds["medaudit predict"]]
        names = list(cmds)
        for name in names[r % 3:] + names[: r % 3]:  # the order rotates every round
            walls[name].append(_timed_process(cmds[name], env))
        print(f"  round {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in walls.items()))
    diff = float(np.abs(Predictions.load(tmp / "m0.npz").probs - np.load(tmp / "c0.npy")).max())
    full, drafted = Predictions.load(tmp / "m0.npz"), Predictions.load(tmp / "d0.npz")
    ddiff = float(np.abs(full.probs - drafted.probs).max())
    flips = int((full.probs.argmax(1) != drafted.probs.argmax(1)).sum())
    print(f"same outputs: max |dprob| medaudit vs careful loop {diff:.1e}; jpeg_draft vs full decode: max |dprob| "
          f"{ddiff:.1e}, {flips} of {n} argmax changed (random-init model: probabilities near 0.5)")
    rd = np.asarray(walls["careful loop"]) / np.asarray(walls["medaudit predict, jpeg_draft"])
    print(f"medaudit predict with jpeg_draft vs careful loop: {np.median(rd):.2f}x [{rd.min():.2f}-{rd.max():.2f}], "
          f"{n / np.median(walls['medaudit predict, jpeg_draft']):.1f} images/s")
    ratio = np.asarray(walls["careful loop"]) / np.asarray(walls["medaudit predict"])
    print(f"medaudit predict vs careful loop (whole processes, cold): {np.median(ratio):.2f}x "
          f"[{ratio.min():.2f}-{ratio.max():.2f}] (target >= 1.2x: {'met' if np.median(ratio) >= 1.2 else 'NOT met'}); "
          f"medaudit {n / np.median(walls['medaudit predict']):.1f} images/s, careful loop "
          f"{n / np.median(walls['careful loop']):.1f} images/s")
    draft_effect(root, args.jpeg_size)
    stage_costs(root, tmp / "jpeg_model.pt", args.batch_size)


def stage_costs(root: Path, ckpt: Path, batch_size: int) -> None:
    """Where a cold ``medaudit predict`` spends CPU, per image, one process and one thread, same run."""
    import torch

    from medaudit.data.images import decode_image, perceptual_signature, pixel_hash
    from medaudit.models.checkpoint import load_checkpoint

    paths = sorted((root / "test").rglob("*.jpg"))
    ld = load_checkpoint(ckpt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t = dict.fromkeys(("decode (full)", "pixel sha256", "pHash + thumbnail", "recipe transform",
                       "decode (draft)", "forward", "forward, BatchNorm folded"), 0.0)
    xs = []
    for p in paths:
        c = time.process_time()
        im = decode_image(p)[0]
        t["decode (full)"] += time.process_time() - c
        c = time.process_time()
        pixel_hash(im)
        t["pixel sha256"] += time.process_time() - c
        c = time.process_time()
        perceptual_signature(im)
        t["pHash + thumbnail"] += time.process_time() - c
        c = time.process_time()
        xs.append(ld.recipe.transform_pil(im))
        t["recipe transform"] += time.process_time() - c
        c = time.process_time()
        decode_image(p, draft_min_side=ld.recipe.img_size)
        t["decode (draft)"] += time.process_time() - c
    from medaudit.models.runtime import fold_batchnorm

    model = ld.model.eval().to(memory_format=torch.channels_last)
    batches = [torch.stack(xs[s : s + batch_size]).contiguous(memory_format=torch.channels_last)
               for s in range(0, len(xs), batch_size)]
    folded, n_folded = fold_batchnorm(model, batches[0][:2])  # what medaudit's pass runs
    with torch.inference_mode():
        for x in batches:  # alternating, so drifting load hits both alike
            for key, m in (("forward", model), ("forward, BatchNorm folded", folded)):
                c = time.process_time()
                m(x)
                t[key] += time.process_time() - c
    torch.set_num_threads(threads)
    per = {k: 1000 * v / len(paths) for k, v in t.items()}
    scan = per["pixel sha256"] + per["pHash + thumbnail"]  # the decode is the inference's (decode once)
    infer = per["decode (full)"] + per["recipe transform"]
    fwd = per["forward, BatchNorm folded"]
    total = scan + infer + fwd
    careful = infer + per["forward"]
    print("CPU ms per image, 1 thread (cold medaudit predict = one decode + hashes + transform + forward): " + ", ".join(
        f"{k} {v:.2f}" for k, v in per.items()) + f" ({n_folded} BatchNorms folded)")
    print(f"  medaudit cold: hashes {scan:.1f} ({100 * scan / total:.0f} %), decode+transform {infer:.1f} "
          f"({100 * infer / total:.0f} %), forward (folded) {fwd:.1f} ({100 * fwd / total:.0f} %), total {total:.1f}; "
          f"the careful loop: {careful:.1f} (no hashes, forward not folded): {careful / total:.2f}x of CPU; "
          f"the most any change to decoding or hashing could give: {careful / fwd:.2f}x (careful loop / folded forward)")


def draft_effect(root: Path, size: int) -> None:
    """What JPEG draft decoding (DCT scaling) would save, and how far it moves the recipe's pixels."""
    from PIL import Image

    paths = sorted((root / "test").rglob("*.jpg"))
    full_t = draft_t = 0.0
    diffs = []
    for p in paths:
        t = time.perf_counter()
        with Image.open(p) as im:
            a = im.convert("RGB").resize((size, size), Image.BILINEAR)
        full_t += time.perf_counter() - t
        t = time.perf_counter()
        with Image.open(p) as im:
            im.draft(im.mode, (size, size))
            b = im.convert("RGB").resize((size, size), Image.BILINEAR)
        draft_t += time.perf_counter() - t
        diffs.append(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)))
    d = np.concatenate([x.ravel() for x in diffs])
    print(f"JPEG draft mode (medaudit: Recipe(jpeg_draft=True)): decode+resize {1000 * full_t / len(paths):.2f} ms/img full vs "
          f"{1000 * draft_t / len(paths):.2f} ms/img draft ({full_t / draft_t:.2f}x); the {size} px input differs by "
          f"mean {d.mean():.2f}, p99 {np.percentile(d, 99):.0f}, max {d.max()} grey levels")


def report(fns: dict, n_images: int, repeats: int) -> None:
    times, outputs = time_interleaved(fns, repeats)
    print("same outputs: " + check_same(outputs))
    print("\n".join(summarize(times, n_images)))
    r_b, r_p = np.median(paired(times, "batched", "wall")), np.median(paired(times, "per-sample", "wall"))
    c_b, c_p = np.median(paired(times, "batched", "cpu")), np.median(paired(times, "per-sample", "cpu"))
    print(f"medaudit vs batched loop: {r_b:.2f}x wall, {c_b:.2f}x CPU (target >= 1.0x: "
          f"{'met' if r_b >= 1.0 else 'NOT met'}); vs per-sample loop: {r_p:.2f}x wall, {c_p:.2f}x CPU "
          f"(target >= 3x: {'met' if r_p >= 3.0 else 'NOT met'}); medaudit "
          f"{n_images / np.median(times['medaudit']['wall']):.1f} images/s")


def main() -> None:
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--_careful":
        a = sys.argv[2:]
        return careful_loop(a[0], a[1], a[2], int(a[3]), int(a[4]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18", help="timm name (random init)")
    ap.add_argument("--img-size", type=int, default=28, help="model input for the npz source (px)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--npz", type=Path, default=PNEUMONIA, help="MedMNIST-layout npz (synthetic if absent)")
    ap.add_argument("--folder-size", type=int, default=64, help="demo image size and model input (px)")
    ap.add_argument("--folder-per-class", type=int, default=80, help="demo test images per class (4 classes)")
    ap.add_argument("--source", choices=("both", "npz", "folder", "jpeg", "all"), default="both",
                    help="both = npz + folder; jpeg = (iii) whole processes on a JPEG folder; all = the three")
    ap.add_argument("--jpeg-per-class", type=int, default=150, help="(iii) test JPEGs per class (2 classes)")
    ap.add_argument("--jpeg-size", type=int, default=224, help="(iii) model input (px)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print_machine(machine_info())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medaudit-bench-") as tmp:
        if args.source in ("both", "npz", "all"):
            bench_npz(args, Path(tmp))
        if args.source in ("both", "folder", "all"):
            bench_folder(args, Path(tmp))
        if args.source in ("jpeg", "all"):
            bench_jpeg(args, Path(tmp))
    print(f"\nload average after: {tuple(round(x, 2) for x in os.getloadavg())}; wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
