"""Grad-CAM time for 32 images at 224 px on ResNet-18 and ViT-Tiny (random init, CPU unless --device).

    .venv/bin/python benchmarks/cam_speed.py [--methods gradcam,layercam] [--n 32] [--threads N]

Per model, in one run and interleaved over ``--repeats`` rounds:

* ``forward``  a plain batched inference pass over the same images (what the report's
  predictions cost per image), for scale: a CAM needs a forward and a backward pass;
* ``plain``    ``pytorch_grad_cam.GradCAM`` called directly with the same target layer,
  reshape and batch size, as a user would write it;
* ``medaudit`` :func:`medaudit.explain.compute_cams` (model state saved and restored,
  gradients for activations only, invalid-CAM checks), for every method in ``--methods``.

Prints seconds per round (median) and ms per image, and the ratios medaudit/plain (the cost
of medaudit's wrapping, GradCAM only) and CAM/forward. ScoreCAM is left out by default: it
needs one forward pass per target-layer channel per image.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _machine import machine_info, print_machine


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="gradcam,gradcam++,eigencam,layercam")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print_machine(machine_info())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 3, 224, 224, generator=gen).to(args.device)
    targets = [i % 2 for i in range(args.n)]
    print(f"{args.n} images at 224 px, batch {args.batch_size}, device {args.device}, median of {args.repeats} rounds\n")
    print("| model | contender | layer | s per round | ms/img | x plain GradCAM | x forward |")
    print("|---|---|---|---|---|---|---|")
    for arch in ("resnet18", "vit_tiny_patch16_224"):
        measure(arch, x, targets, args)


def measure(arch: str, x, targets: list[int], args) -> None:
    """Time forward / plain GradCAM / medaudit's methods on one model; print its rows."""
    import timm
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from medaudit.explain import compute_cams, resolve_target_layer

    model = timm.create_model(arch, pretrained=False, num_classes=2).eval().to(args.device)
    layer, name, reshape = resolve_target_layer(model, arch)
    if reshape is not None:
        reshape.set_input_size(224, 224)
    bs = args.batch_size

    def forward():
        with torch.inference_mode():
            for i in range(0, args.n, bs):
                model(x[i : i + bs])

    def plain():
        with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
            cam.batch_size = bs
            for i in range(0, args.n, bs):
                cam(input_tensor=x[i : i + bs], targets=[ClassifierOutputTarget(t) for t in targets[i : i + bs]])

    results = {}

    def ours(method: str):
        def run():
            results[method] = compute_cams(model, x, targets, method=method, batch_size=bs)
        return run

    contenders = {"forward": forward, "plain": plain}
    contenders.update({f"medaudit {m}": ours(m) for m in args.methods.split(",")})
    for fn in contenders.values():  # warm-up round, untimed
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for k, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, dt in med.items():
        method = k.split(" ", 1)[1] if k.startswith("medaudit") else None
        vs_plain = f"{dt / med['plain']:.2f}x" if k == "medaudit gradcam" else ""
        valid = f" (valid {int(results[method].valid.sum())}/{args.n})" if method else ""
        print(f"| {arch} | {k}{valid} | {name} | {dt:.2f} | {1000 * dt / args.n:.1f} | {vs_plain} | "
              f"{dt / med['forward']:.1f}x |")

if __name__ == "__main__":
    main()
