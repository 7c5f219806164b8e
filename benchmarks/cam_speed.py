"""Grad-CAM time for 32 images at 224 px on ResNet-18 and ViT-Tiny (random init, CPU unless --device).

    .venv/bin/python benchmarks/cam_speed.py [--methods gradcam,layercam] [--n 32] [--threads N]
        [--report ../shared/data/medmnist/pneumoniamnist.npz]

Per model, in one run and interleaved over ``--repeats`` rounds:

* ``forward``  a plain batched inference pass over the same images (what the report's
  predictions cost per image), for scale: a CAM needs a forward and a backward pass;
* ``plain``    ``pytorch_grad_cam.GradCAM`` called directly with the same target layer,
  reshape and batch size, as a user would write it;
* ``medaudit`` :func:`medaudit.explain.compute_cams` (model state saved and restored,
  gradients for activations only, invalid-CAM checks), for every method in ``--methods``;
* ``medaudit faithfulness`` the faithfulness check on those Grad-CAMs (7 forwards per image:
  the original and, for k = 10/20/50 %, the map's and a random map's top-k blurred out).

With ``--report DATA``, also a default ``medaudit report`` on DATA at 224 px, printing the CAM
step's share of the report's time (the issue-16 budget: under 25 %).

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
    ap.add_argument("--report", default=None, metavar="DATA",
                    help="also run a default medaudit report on DATA (e.g. ../shared/data/medmnist/pneumoniamnist.npz) "
                         "and print the CAM step's share of its time")
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
    if args.report:
        report_share(args.report, args)


def report_share(data: str, args) -> None:
    """A default ``medaudit report`` (random-init ResNet-18, 224 px) on ``data``: the CAM step's share of it."""
    import json
    import tempfile
    from pathlib import Path

    import torch

    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe
    from medaudit.pipeline import ReportOptions, run_report

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = Path(tmp) / "resnet18.pt"
        save_checkpoint(ckpt, create_model("resnet18", 2, in_chans=1, img_size=224), arch="resnet18",
                        class_names=["normal", "pneumonia"], task="binary",
                        recipe=Recipe(img_size=224, in_chans=1, mean=(0.5,), std=(0.25,)), small_stem=False)
        opts = ReportOptions(checkpoints=[ckpt], data_spec=data, out_dir=Path(tmp) / "report",
                             classes=["normal", "pneumonia"], device=args.device, use_cache=False,
                             cache_dir=Path(tmp) / "cache")
        t = time.perf_counter()
        snap, _ = run_report(opts)
        total = time.perf_counter() - t
        timings = snap["run"]["timings_s"]
        cam = timings.get("cam", 0.0)
        faith = snap["models"][0]["cam"].get("faithfulness") or {}
        print(f"\ndefault report on {data} (resnet18 random init, 224 px, test split): total {total:.1f} s, "
              f"CAM step {cam:.1f} s = {100 * cam / total:.1f} % of the report "
              f"(gallery {len(snap['models'][0]['cam']['tiles'])} tiles + faithfulness on {faith.get('n')} images)")
        print("timings_s: " + json.dumps(timings))


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

    def faithful():
        from medaudit.explain.faithfulness import faithfulness

        res = results["gradcam"]
        faithfulness(model, x, res.targets, res.cams, res.valid, res.grid or (7, 7), batch_size=bs)

    contenders = {"forward": forward, "plain": plain}
    contenders.update({f"medaudit {m}": ours(m) for m in args.methods.split(",")})
    if "gradcam" in args.methods.split(","):
        contenders["medaudit faithfulness (k=10/20/50%)"] = faithful
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
        method = k.split(" ", 1)[1] if k.startswith("medaudit") and "faithfulness" not in k else None
        vs_plain = f"{dt / med['plain']:.2f}x" if k == "medaudit gradcam" else ""
        valid = f" (valid {int(results[method].valid.sum())}/{args.n})" if method else ""
        print(f"| {arch} | {k}{valid} | {name} | {dt:.2f} | {1000 * dt / args.n:.1f} | {vs_plain} | "
              f"{dt / med['forward']:.1f}x |")

if __name__ == "__main__":
    main()
