"""Efficiency of ResNet-18 and ViT-Tiny at 224 px on this machine, measured by medaudit.bench.

Random-init weights (timing and FLOPs do not depend on the weight values), interleaved
timing after a warm-up, machine and versions printed with the table. Baseline in the same
run: a plain ``time.perf_counter()`` loop around ``model(x)`` at batch 1 (what a notebook
does, with the same warm-up, repeats and memory layout), so medaudit's batch-1 median can be
checked against it (ratio ~1.0: the harness adds no overhead of its own).

    .venv/bin/python benchmarks/bench_models.py                       # defaults below
    .venv/bin/python benchmarks/bench_models.py --repeats 10 --batch-sizes 1,8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _machine import machine_info, print_machine

ARCHS = ("resnet18", "vit_tiny_patch16_224")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated timm names")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--contiguous", action="store_true", help="time CNNs in NCHW instead of channels-last")
    parser.add_argument("--json", type=Path, default=None, help="also write the full result here")
    args = parser.parse_args()

    import torch

    from medaudit.bench import benchmark_models, format_table
    from medaudit.models.factory import create_model

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print_machine(machine_info())
    size = args.img_size
    models = [(a, create_model(a, args.num_classes, img_size=size), (3, size, size)) for a in args.archs.split(",")]
    start = time.perf_counter()
    result = benchmark_models(
        models, device=args.device, batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        repeats=args.repeats, warmup=args.warmup, threads=args.threads, channels_last=not args.contiguous,
        progress=True,
    )
    env = result["environment"]
    print(f"python {env['python']}, timm {env['timm']}, medaudit {env['medaudit']}, {env['platform']}")
    print(format_table(result))
    print("\nplain perf_counter loop at batch 1 (same warm-up, repeats and memory layout, after the bench):")
    for name, model, shape in models:
        model.eval()
        x = torch.randn(1, *shape)
        if result["models"][name]["channels_last"]:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(x)
            ts = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                model(x)
                ts.append(1000 * (time.perf_counter() - t))
        ours = result["models"][name]["latency_ms"]["median"]
        plain = statistics.median(ts)
        print(f"  {name}: plain {plain:.2f} ms, medaudit.bench {ours:.2f} ms "
              f"({'channels-last' if result['models'][name]['channels_last'] else 'contiguous'}); ratio {ours / plain:.2f}")
    print(f"wall {time.perf_counter() - start:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
