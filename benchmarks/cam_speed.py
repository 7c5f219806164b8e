"""Time CAMs of 32 images at 224 px on ResNet-18 and ViT-Tiny (random init, CPU unless --device).

    .venv/bin/python benchmarks/cam_speed.py [--methods gradcam,layercam] [--n 32] [--threads N]

Prints one line per (model, method): seconds for all images and per image. ScoreCAM is
left out by default: it needs one forward pass per target-layer channel per image.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import timm
    import torch

    from medaudit.explain import compute_cams

    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="gradcam,gradcam++,eigencam,layercam")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 3, 224, 224, generator=gen)
    targets = [i % 2 for i in range(args.n)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"{args.n} images at 224 px, batch {args.batch_size}")
    for arch in ("resnet18", "vit_tiny_patch16_224"):
        model = timm.create_model(arch, pretrained=False, num_classes=2).eval().to(args.device)
        compute_cams(model, x[:2].to(args.device), targets[:2], batch_size=2)  # warm-up
        for method in args.methods.split(","):
            t = time.perf_counter()
            res = compute_cams(model, x.to(args.device), targets, method=method, batch_size=args.batch_size)
            dt = time.perf_counter() - t
            print(f"{arch:22s} {method:10s} layer {res.layer:16s} {dt:7.2f} s  {1000 * dt / args.n:7.1f} ms/img  "
                  f"valid {int(res.valid.sum())}/{args.n}")


if __name__ == "__main__":
    main()
