"""`medaudit demo`: synthetic brain-MRI-like data → a CNN and a ViT trained briefly → full report.

Everything runs on the CPU in a few minutes; nothing is downloaded. The two models are of
different families on purpose, so the report shows the CNN-vs-Transformer comparison
(architecture table, error overlap, paired tests, Grad-CAM for both). The data are read through
their CSV manifest (patients, sites, sex, age: :mod:`medaudit.data.demo`), so the report also
shows subgroups by site, sex and age band, patient-level metrics and the patient-leakage check;
site B's fainter, noisier scans are planted, so the subgroup section has a real finding to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medaudit.audit import AuditSettings, SubgroupSettings
from medaudit.data import load_dataset, make_demo_dataset
from medaudit.data.demo import MANIFEST
from medaudit.data.demo_external import make_external_site
from medaudit.models.weights import safe_torch_load
from medaudit.pipeline import ReportOptions, run_report
from medaudit.train.config import TrainConfig
from medaudit.train.loop import train

# (display name, architecture, training options): small, quick, and of different families.
# The ViT needs smaller batches, a lower rate and no augmentation to learn 240 images from
# scratch within a CPU minute (at batch 32 it stayed at chance, 0.25). Measured on the 2-core
# CI machine with the patient data (about 80 training patients, site B faint): ViT val accuracy
# 0.39 at its selected epoch 6 (val AUC 0.73), ResNet-18 0.86 (AUC 0.99); before patients, with
# 240 independent slices, 0.71 and 0.99. The gap is what the demo report is for: a CNN and a ViT
# that differ, with the errors to compare.
DEMO_MODELS = (
    ("resnet18", "resnet18", {"epochs": 6, "lr": 1e-3, "batch_size": 32, "augment": "basic"}),
    ("vit_tiny", "vit_tiny_patch16_224",
     {"epochs": 8, "lr": 5e-4, "batch_size": 16, "augment": "none", "scheduler": "cosine"}),
)
# The subgroup audit of the demo: the manifest's columns, age in three bands (ages are 18-90).
# No intersections: each crossed group joins the Holm family of every gap, and the demo plants
# nothing there. With seed 0 even the tests' tiny splits hold two groups of each column.
DEMO_SUBGROUPS = {"group_by": ["site", "sex", "age"], "bins": {"age": [18.0, 40.0, 60.0, 90.0]},
                  "level": "patient", "aggregate": "max"}
# The demo's corruption sweep: four corruptions at severities 1, 3, 5 on a stratified 100 of the 160
# test images: 12 passes of 100 images per model, about 10 s of CPU (docs/robustness.md), so the report
# shows the heat map and the subsampling note.
DEMO_ROBUSTNESS = ("contrast_down", "gaussian_noise", "gaussian_blur", "jpeg")
DEMO_SEVERITIES = (1, 3, 5)
DEMO_ROBUSTNESS_SAMPLES = 100


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote: the data folder, one checkpoint per demo model, the report files."""

    data_dir: Path
    checkpoints: list[Path]
    report_paths: dict[str, Path]
    snapshot: dict


def run_demo(
    out_dir: Path,
    *,
    work_dir: Path,
    img_size: int = 64,
    n_train: int = 60,
    n_val: int = 20,
    n_test: int = 40,
    epoch_scale: float = 1.0,
    bench: bool = True,
    formats: tuple[str, ...] = ("html", "pdf", "json"),
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Generate the demo data, train both demo models and write the report.

    Checkpoints that already exist for the same data and settings are reused, like the
    predictions cache, so a second demo is fast.

    Parameters
    ----------
    out_dir : Path
        Report folder.
    work_dir : Path
        Where the data (``data/``) and the checkpoints (``checkpoints/NAME.pt``) go.
    img_size : int
        Side in pixels of the generated images and of the models' input.
    n_train, n_val, n_test : int
        Generated images per class in each split. The test split is the largest so that the
        site-B recall gap rests on about 20 disease patients per site (a gap needs
        ``min_group_n`` = 10 patients in each group and survives a Holm adjustment over every group).
    epoch_scale : float
        Multiplies each demo model's epochs (at least 1); tests use a fraction.
    bench : bool
        Measure efficiency (params, FLOPs, latency) in the report.
    formats : tuple of {"html", "pdf", "json"}
    progress : bool
        Show progress bars.
    log : callable, optional
        Receives one line (``str``) per step and per training epoch; default: nothing is printed.

    Returns
    -------
    DemoResult
    """
    log = log or (lambda _line: None)
    masks = work_dir / "masks"  # lesion masks for --masks, beside (not inside) the image folder
    data_dir = make_demo_dataset(work_dir / "data", n_train=n_train, n_val=n_val, n_test=n_test, size=img_size,
                                 masks=masks)
    manifest = data_dir / MANIFEST  # the same images as the folder, with the patients and their metadata
    # The external site (another contrast and noise level): half as many images per class as the test split.
    external = make_external_site(work_dir / "external_site", n_per_class=max(1, n_test // 2), size=img_size)
    ds = load_dataset(str(manifest), patient_col="patient_id")
    log(f"demo data: {data_dir} ({', '.join(f'{k} {len(v)}' for k, v in ds.splits.items())} images)")
    ckpts = []
    for name, arch, opts in DEMO_MODELS:
        out = work_dir / "checkpoints" / f"{name}.pt"
        cfg = TrainConfig(arch=arch, data=str(manifest), img_size=img_size, in_chans=3, select_by="val_auc", seed=0,
                          small_stem=False, **{**opts, "epochs": max(1, round(opts["epochs"] * epoch_scale)),
                                               "batch_size": min(opts["batch_size"], len(ds.split("train")))})
        if _reusable(out, ds.fingerprint(), cfg):
            log(f"{name}: reusing {out}")
        else:
            log(f"training {name} ({arch}, {cfg.epochs} epochs at {img_size} px)")
            train(ds, cfg, out, progress=progress, log=log)
        ckpts.append(out)
    opts = ReportOptions(
        checkpoints=ckpts, data_spec=str(manifest), out_dir=out_dir, names=[m[0] for m in DEMO_MODELS],
        patient_col="patient_id", checklists=("claim2024",),  # `make demo` shows the CLAIM 2024 table
        settings=AuditSettings(negative_classes=["notumor"], subgroups=SubgroupSettings(**DEMO_SUBGROUPS)),
        bench=bench, bench_repeats=5, formats=formats, cam_masks=masks,
        external=(f"external_site={external}",),  # `make demo` shows an external cohort and its shift test
        title="medaudit demo: ResNet-18 vs ViT-Tiny on synthetic brain MRI", progress=progress,
        command="medaudit demo", robustness=DEMO_ROBUSTNESS, robustness_severities=DEMO_SEVERITIES,
        robustness_samples=DEMO_ROBUSTNESS_SAMPLES,
    )
    snapshot, paths = run_report(opts)
    return DemoResult(data_dir, ckpts, paths, snapshot)


def _reusable(path: Path, fingerprint: str, cfg: TrainConfig) -> bool:
    """Whether the checkpoint at ``path`` was trained on these data with these settings."""
    if not path.is_file():
        return False
    meta = safe_torch_load(path)
    training = meta.get("training") or {}
    # device/amp/workers are recorded as resolved at run time and do not change the model.
    runtime = {"device", "amp", "num_workers"}
    same_config = all(training.get(k) == v for k, v in cfg.to_dict().items() if k not in runtime)
    return meta.get("dataset_fingerprint") == fingerprint and same_config
