"""Training throughput: medaudit's loop vs a minimal hand-written PyTorch loop, same run.

Both loops train the same architecture (fresh, same seed) on the same in-memory uint8
data with the same batch size, device, optimizer (Adam) and loss (CE); both convert each
batch from uint8 and normalise it. medaudit additionally does its bookkeeping (loss/acc
accumulation, finiteness checks, augmentation hook, progress plumbing). Epochs alternate
(medaudit, hand, medaudit, hand, ...) after one warm-up epoch each, so drifting machine
load hits both; the median images/s of each is reported with the ratio (target >= 0.95).
By default an epoch includes its end, as in a real run: medaudit's validation pass, best
checkpoint and resumable ``NAME.last.pt`` (optimizer state included) against the hand loop's
validation pass and ``torch.save(state_dict)``; ``--train-only`` times the steps alone.
The hand loop keeps PyTorch's default contiguous layout on the CPU (medaudit runs CNNs
channels-last, see ``medaudit.models.runtime.use_channels_last``).

Usage::

    python benchmarks/train_throughput.py --arch resnet18 --img-size 28 --n 512 --batch-size 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_info, print_machine


def make_dataset(n: int, size: int, num_classes: int, seed: int):
    from medaudit.data.base import Dataset, Split

    rng = np.random.default_rng(seed)
    names = [str(c) for c in range(num_classes)]
    splits = {}
    for name, m in (("train", n), ("val", max(num_classes * 4, n // 8))):
        y = rng.integers(0, num_classes, size=m).astype(np.int64)
        x = rng.integers(0, 256, size=(m, size, size), dtype=np.uint8)
        splits[name] = Split(name, [f"{name}/{i}" for i in range(m)], y, names, array=x)
    return Dataset("synthetic", names, "binary" if num_classes == 2 else "multiclass", splits)


def medaudit_loop(ds, args, device):
    """Returns a callable running one training epoch of medaudit's loop; images per epoch."""
    import torch

    from medaudit.models.checkpoint import atomic_torch_save, build_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe
    from medaudit.train.config import TrainConfig
    from medaudit.train.loop import _Loop, last_path_for

    cfg = TrainConfig(arch=args.arch, img_size=args.img_size, in_chans=3, batch_size=args.batch_size, epochs=10**6,
                      device=str(device), seed=0).validate()
    recipe = Recipe(cfg.img_size, cfg.in_chans, tuple(cfg.mean), tuple(cfg.std))
    torch.manual_seed(0)
    model = create_model(args.arch, len(ds.class_names), img_size=args.img_size)
    loop = _Loop(cfg, model, device, device.type == "cuda", recipe, ds.class_names, False, ds.split("train"),
                 ds.split("val"), False, lambda s: None)
    state = {"epoch": 0}
    out = Path(args.tmp) / "medaudit.pt"
    last = last_path_for(out)
    meta = {"arch": args.arch, "class_names": ds.class_names, "task": ds.task, "recipe": recipe,
            "small_stem": None, "dataset_fingerprint": None}

    def epoch():
        loop._train_epoch(state["epoch"], last)
        state["epoch"] += 1
        if args.train_only:
            return
        # What `medaudit train` does after every epoch: validation pass, best checkpoint (written
        # whenever val improves; here every epoch, the worst case) and the resumable NAME.last.pt.
        loop.evaluate(loop.val_split)
        atomic_torch_save(build_checkpoint(loop.model, **meta, training=cfg.to_dict(), history=[],
                                           selected_on="val"), out)
        loop._save_last(last, meta, cfg.to_dict(), [], state["epoch"], 0.0, state["epoch"], 0)

    return epoch


def hand_loop(ds, args, device):
    """The minimal loop a user would write: shuffle, convert, forward, CE, backward, step."""
    import torch
    import torch.nn.functional as F

    from medaudit.models.factory import create_model

    torch.manual_seed(0)
    model = create_model(args.arch, len(ds.class_names), img_size=args.img_size).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    split = ds.split("train")
    x_all, y_all = split.array, torch.as_tensor(split.labels)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(0)

    def epoch():
        model.train()
        order = torch.randperm(len(y_all), generator=gen).numpy()
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            x = torch.from_numpy(x_all[idx]).to(device).float().div_(255).unsqueeze(1).expand(-1, 3, -1, -1)
            x = (x - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y_all[idx].to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        if not args.train_only:  # a notebook's epoch end: validation forward pass, save the weights
            model.eval()
            val = ds.split("val")
            with torch.no_grad():
                for i in range(0, len(val.labels), 256):
                    xv = torch.from_numpy(val.array[i : i + 256]).to(device).float().div_(255).unsqueeze(1)
                    model((xv.expand(-1, 3, -1, -1) - mean) / std)
            torch.save(model.state_dict(), Path(args.tmp) / "hand.pt")
        if device.type == "cuda":
            torch.cuda.synchronize()

    return epoch


def timed(fn, device) -> float:
    import torch

    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--img-size", type=int, default=28)
    p.add_argument("--n", type=int, default=512, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="measured epochs per loop")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--train-only", action="store_true",
                   help="time the training steps only (no validation pass or checkpoint writes at epoch end)")
    args = p.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="medaudit-train-bench-")
    args.tmp = tmp.name

    import torch

    from medaudit.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    print_machine(machine_info())
    device = resolve_device(args.device)
    ds = make_dataset(args.n, args.img_size, args.classes, seed=0)
    loops = {"medaudit": medaudit_loop(ds, args, device), "hand": hand_loop(ds, args, device)}
    for fn in loops.values():  # warm-up (allocator, cuDNN autotune, first-touch)
        fn()
    rates: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(args.repeats):
        for name, fn in loops.items():
            rates[name].append(args.n / timed(fn, device))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"device={device} arch={args.arch} img={args.img_size} n={args.n} batch={args.batch_size} "
          f"threads={torch.get_num_threads()} repeats={args.repeats} "
          f"({'training steps only' if args.train_only else 'epochs with validation pass and checkpoint writes'})")
    for name in loops:
        print(f"  {name:9s} {med[name]:9.1f} img/s  (runs: {', '.join(f'{r:.1f}' for r in rates[name])})")
    ratio = med["medaudit"] / med["hand"]
    print(f"  ratio medaudit/hand = {ratio:.3f} (target >= 0.95)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
