"""Which CAM method localises best per architecture family: the pointing game on planted lesions.

Trains the tiny ResNet and ViT of tests/test_explain_localise.py on its synthetic task (a framed
"lesion" square whose colour is the class, plus unframed distractors and a text bar), then for each
CAM method counts how often the map's maximum falls in the lesion's quadrant (chance 0.25) and in
the lesion grown by 4 px, on held-out images, for several training seeds. Prints a Markdown table
(docs/cam-defaults.md records one run) and the method medaudit.explain.cam.DEFAULT_METHODS should
hold per family.

    CI=true .venv/bin/python benchmarks/cam_defaults.py [--seeds 3] [--n 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medaudit.explain.cam import DEFAULT_METHODS  # noqa: E402
from medaudit.explain.targets import choose_target_layer  # noqa: E402
from tests.test_explain_localise import pointing_game, tiny_resnet, tiny_vit, train  # noqa: E402

METHODS = ("gradcam", "gradcam++", "layercam", "eigencam", "scorecam")
FAMILIES = {"cnn": (tiny_resnet, 100, 3e-3), "transformer": (tiny_vit, 300, 1e-3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per family")
    ap.add_argument("--n", type=int, default=256, help="held-out images per pointing game")
    args = ap.parse_args()
    import torch

    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for family, (make, steps, lr) in FAMILIES.items():
        results[family] = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            model = make()
            torch.manual_seed(seed)
            acc = train(model, steps=steps, lr=lr, seed=seed)
            layer = choose_target_layer(model, (32, 32))[0]
            for m in METHODS:
                t = time.perf_counter()
                q, box, _ = pointing_game(model, seed=1000 + seed, method=m, n=args.n)
                results[family][m].append((q, box))
                print(f"{family} seed {seed} (acc {acc:.2f}, layer {layer}) {m}: quadrant {q:.3f} box {box:.3f} "
                      f"({time.perf_counter() - t:.1f}s)", file=sys.stderr)
    print(f"| family | method | pointing game, lesion quadrant (mean over {args.seeds} seeds, min-max) | "
          "in lesion + 4 px |")
    print("|---|---|---|---|")
    best = {}
    for family, per in results.items():
        for m, vals in per.items():
            q = np.array([v[0] for v in vals])
            b = np.array([v[1] for v in vals])
            print(f"| {family} | {m} | {q.mean():.3f} ({q.min():.3f}-{q.max():.3f}) | {b.mean():.3f} |")
        best[family] = max(per, key=lambda m: np.mean([v[0] for v in per[m]]))
    print()
    print(f"best per family: {best}; medaudit.explain.cam.DEFAULT_METHODS = {DEFAULT_METHODS}")


if __name__ == "__main__":
    main()
