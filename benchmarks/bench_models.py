"""Efficiency of ResNet-18 and ViT-Tiny at 224 px on this machine, measured by medaudit.bench.

Random-init weights (timing and FLOPs do not depend on the weight values), interleaved
timing after a warm-up, machine and versions printed with the table.

    .venv/bin/python benchmarks/bench_models.py                       # defaults below
    .venv/bin/python benchmarks/bench_models.py --repeats 10 --batch-sizes 1,8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the full result here")
    args = parser.parse_args()

    from medaudit.bench import benchmark_models, format_table
    from medaudit.models import create_model

    size = args.img_size
    models = [(a, create_model(a, args.num_classes, img_size=size), (3, size, size)) for a in args.archs.split(",")]
    start = time.perf_counter()
    result = benchmark_models(
        models, device=args.device, batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        repeats=args.repeats, warmup=args.warmup, threads=args.threads, channels_last=args.channels_last,
        progress=True,
    )
    env = result["environment"]
    print(f"python {env['python']}, timm {env['timm']}, medaudit {env['medaudit']}, {env['platform']}")
    print(format_table(result))
    print(f"wall {time.perf_counter() - start:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
