"""`medaudit report`: the main job — audit one or more checkpoints on a dataset."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled
from medaudit.cli._rehash import rehash_option
from medaudit.cli.cam import BOXES_HELP, MASKS_HELP, METHOD_HELP
from medaudit.cli.cam import METHODS as CAM_METHODS  # the CLI's copy of explain.CAM_METHODS: no torch for --help
from medaudit.errors import MedauditError
from medaudit.gate import ON_CHOICES, format_table, parse_gate, run_gates


def _int_list(value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{value}'", param_hint="--bench-batch-sizes") from None
    if not out or min(out) < 1:
        raise click.BadParameter("batch sizes must be >= 1", param_hint="--bench-batch-sizes")
    return out


@click.command()
@click.option("--models", "models", required=True, multiple=True, type=click.Path(path_type=Path), help="Checkpoints to audit (repeat the option or list several after it).")
@click.argument("more_models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", "data_spec", required=True, help="Data spec: image folder, .npz, medmnist:NAME[@SIZE] or CSV manifest.")
@click.option("--split", default="test", show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Output folder (default reports/<timestamp>).")
@click.option("--names", default=None, help="Comma-separated display names, one per model (default: file stems).")
@click.option("--classes", default=None, help="Class names for data with integer labels, comma-separated.")
@click.option("--negative-class", "negative_classes", multiple=True, help="A 'healthy' class (repeatable). Default: auto-detected (normal, notumor, healthy, ...).")
@click.option("--positive-class", default=None, help="Binary tasks: the disease class.")
@click.option("--target-sensitivity", default=0.95, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True))
@click.option("--prevalence", default=None, help="Share of disease where the model will be used (e.g. 0.02 or 2%): PPV/NPV, decision curves and costs at that prevalence; or per disease class, CLASS=P[,CLASS=P...] (e.g. glioma=0.02,meningioma=1%): PPV/NPV of each class one-vs-rest. Default: the test split's own.")
@click.option("--cost", default=None, help="Cost of a missed disease and of a false alarm, e.g. FN=10,FP=1: expected cost per patient at the cost-optimal threshold chosen on validation.")
@click.option("--cost-matrix", type=click.Path(path_type=Path), default=None, help="CSV of costs, header 'true,<class>,...', one row per true class: expected cost of the argmax and of the cost-optimal (Bayes) decision.")
@click.option("--conformal-alpha", default=0.1, show_default=True, type=float, help="Conformal prediction sets aim at coverage 1 - alpha for every class.")
@click.option("--delta", default=0.05, show_default=True, type=float, help="A guaranteed threshold (and a risk target for referral) fails with probability at most delta.")
@click.option("--group-by", "group_by", multiple=True, metavar="COL", help="Subgroup performance by this metadata column (repeatable), e.g. sex, site; numeric columns need --bins.")
@click.option("--bins", "bins", multiple=True, metavar="COL=E0,E1,...", help="Bands of a numeric --group-by column, e.g. age=0,40,65,120 (strictly increasing; repeatable).")
@click.option("--intersect", "intersections", multiple=True, metavar="A,B", help="Also cross two group columns, e.g. sex,site (repeatable).")
@click.option("--patient-col", "patient_col", default=None, help="Metadata column of patient ids (hashed on load). Default: patient_id when present; intervals then resample patients.")
@click.option("--level", default="image", show_default=True, type=click.Choice(["image", "patient"]), help="patient: also patient-level metrics (one prediction per patient).")
@click.option("--aggregate", default="max", show_default=True, type=click.Choice(["max", "mean"]), help="How a patient's images combine at --level patient (max or mean of p(disease)).")
@click.option("--min-group-n", default=10, show_default=True, type=click.IntRange(1, None), help="Smallest group (patients, else images) whose values are estimated.")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(0, 100000), help="Bootstrap resamples for CIs (0 = none).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--ece-bins", default=15, show_default=True, type=click.IntRange(2, 1000))
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 65536))
@click.option("--no-cache", is_flag=True, help="Re-run inference even if cached predictions exist, and draw the figures anew.")
@rehash_option
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision (bf16, else fp16) for inference on CUDA; CPU always runs fp32.")
@click.option("--no-bench", is_flag=True, help="Skip the efficiency measurements.")
@click.option("--bench-repeats", default=10, show_default=True, type=click.IntRange(1, 10000))
@click.option("--bench-batch-sizes", default="1", show_default=True, help="Batch sizes timed by the efficiency step, e.g. 1,32 (the evaluation pass reports its own throughput).")
@click.option("--no-cam", is_flag=True, help="Skip the Grad-CAM galleries.")
@click.option("--cam-method", default="auto", show_default=True, type=click.Choice(CAM_METHODS), help=METHOD_HELP)
@click.option("--cam-layer", default=None, help="Dotted path of the CAM target layer (default: chosen per architecture).")
@click.option("--cam-per-group", default=8, show_default=True, type=click.IntRange(0, 256))
@click.option("--masks", "cam_masks", default=None, type=click.Path(path_type=Path), help=MASKS_HELP)
@click.option("--boxes", "cam_boxes", default=None, type=click.Path(path_type=Path), help=BOXES_HELP)
@click.option("--format", "formats", default="html,pdf,json", show_default=True, help="Comma list of html, pdf, json (checked before any inference).")
@click.option("--title", default=None)
@click.option("--author", default=None)
@click.option("--notes", "notes_path", type=click.Path(path_type=Path), default=None, help="Markdown file with reviewer notes.")
@click.option("--template-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help="Templates that override/extend the built-in ones.")
@click.option("--gate", "gates", multiple=True, help="Gate expression checked after the report is written (see `medaudit gate`).")
@click.option("--gate-on", default="point", show_default=True, type=click.Choice(ON_CHOICES), help="What a --gate compares: the point estimate or a 95% bound (conservative = the bound on the failing side).")
@click.option("--robustness", default=None, is_flag=False, flag_value="default", metavar="[default|LIST]", help="Corruption sweep: every model on corrupted copies of the images at 5 severities (default: all 13 corruptions; or a comma list, e.g. gaussian_noise,jpeg). See docs/robustness.md.")
@click.option("--robustness-samples", default=500, show_default=True, type=int, help="Stratified subsample of the split the sweep runs on (cost: N x corruptions x severities forwards, cached).")
@click.option("--robustness-severities", default="1,2,3,4,5", show_default=True, help="Severities of each corruption (among 1-5).")
@click.option("--checklist", "checklists", multiple=True, metavar="NAME", help="Add a reporting checklist filled from the audit as an appendix (repeatable): claim2024, tripod-ai, stard-ai.")
@click.option("--external", "external", multiple=True, metavar="NAME=SPEC", help="An external cohort evaluated beside the internal split (repeatable): SPEC is any --data spec (its test split, else its only split); metrics, drops with intervals, missed disease and dataset-shift tests. See docs/external.md.")
@click.option("--quiet", is_flag=True)
@handle_errors
def report(models, more_models, data_spec, split, out_dir, names, classes, negative_classes, positive_class,
           target_sensitivity, prevalence, cost, cost_matrix, conformal_alpha, delta, group_by, bins, intersections,
           patient_col, level, aggregate, min_group_n, bootstrap, seed, ece_bins, device, batch_size, no_cache, amp, no_bench, bench_repeats, bench_batch_sizes,
           no_cam, cam_method, cam_layer, cam_per_group, cam_masks, cam_boxes, formats, title, author, notes_path, template_dir, gates,
           gate_on, robustness, robustness_samples, robustness_severities, checklists, external, quiet):
    """Audit checkpoints on a dataset and write report.html, report.pdf and report.json.

    \b
    Example:
      medaudit report --models checkpoints/resnet18.pt checkpoints/vit_tiny.pt \\
          --data data/brain_mri --negative-class notumor -o reports/brain
    Inference runs once per (checkpoint, data, split) and is cached; everything else is computed
    from the saved predictions. With --gate, exit code 1 when a gate fails (the report is still written).
    """
    from medaudit.audit import AuditSettings, SubgroupSettings
    from medaudit.clinical import ClinicalSettings, parse_cost, parse_prevalence_spec, read_cost_matrix
    from medaudit.pipeline import ReportOptions, run_report

    costs = parse_cost(cost)
    overall, per_class = parse_prevalence_spec(prevalence)
    clinical = ClinicalSettings(prevalence=overall, prevalence_per_class=per_class, cost_fn=costs and costs[0],
                                cost_fp=costs and costs[1], conformal_alpha=conformal_alpha, delta=delta,
                                cost_matrix=read_cost_matrix(cost_matrix) if cost_matrix else None)
    settings = AuditSettings(
        split=split, bootstrap=bootstrap, seed=seed, ece_bins=ece_bins,
        negative_classes=list(negative_classes) or None, positive_class=positive_class,
        target_sensitivity=target_sensitivity, clinical=clinical,
        subgroups=SubgroupSettings(group_by=[c.strip() for c in group_by], bins=_bins(bins),
                                   intersections=[_pair(t) for t in intersections], min_group_n=min_group_n,
                                   level=level, aggregate=aggregate),
    )
    if gates:  # parse before the long run so a typo fails in a second, not after inference
        for g in gates:
            parse_gate(g, option="--gate")
    _check_names_form(names, models, more_models)
    out_dir = out_dir or Path("reports") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    opts = ReportOptions(
        checkpoints=list(models) + list(more_models), data_spec=data_spec, out_dir=out_dir,
        names=[n.strip() for n in names.split(",")] if names else None,
        classes=[c.strip() for c in classes.split(",")] if classes else None, patient_col=patient_col,
        settings=settings, device=device, batch_size=batch_size, amp=amp, use_cache=not no_cache,
        bench=not no_bench, bench_repeats=bench_repeats, bench_batch_sizes=_int_list(bench_batch_sizes), cam=not no_cam and cam_per_group > 0,
        cam_method=cam_method, cam_layer=cam_layer, cam_per_group=cam_per_group, cam_masks=cam_masks,
        cam_boxes=cam_boxes, formats=tuple(formats.split(",")),
        title=title, author=author, notes_path=notes_path, template_dir=template_dir,
        progress=not (quiet or progress_disabled()),
        robustness=robustness, robustness_samples=robustness_samples,
        robustness_severities=_severities(robustness_severities),
        external=tuple(external),
        checklists=tuple(c.strip() for c in checklists),
    )
    from medaudit.distributed import lead  # torchrun: rank 0 writes the report, the other ranks run shards

    snapshot, paths = lead(run_report, opts, device=device)
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
    if gates:
        result = run_gates(snapshot, list(gates), on=gate_on, option="--gate")
        click.echo(format_table(result))
        if not result.passed:
            raise SystemExit(1)


def _severities(text: str) -> tuple[int, ...]:
    """``--robustness-severities 1,3,5`` as integers (their range is checked by the library)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise MedauditError(f"robustness_severities {text!r}: give comma-separated integers among 1-5, e.g. 1,3,5",
                            param="robustness_severities") from None


def _bins(values) -> dict[str, list[float]]:
    """``--bins age=0,40,65`` (repeatable) as ``{column: edges}``; one --bins per column."""
    from medaudit.metadata import parse_bins

    out: dict[str, list[float]] = {}
    for text in values:
        col, edges = parse_bins(text)
        if col.lower() in {c.lower() for c in out}:
            raise MedauditError(f"bins: '{col}' is given twice; give one --bins per column", param="bins")
        out[col] = edges
    return out


def _pair(text: str) -> list[str]:
    """``--intersect sex,site`` as ``["sex", "site"]``."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise MedauditError(f"intersections {text!r}: give two columns separated by a comma, e.g. sex,site",
                            param="intersections")
    return parts


def _check_names_form(names: str | None, models, more_models) -> None:
    """``--names r18 vit`` reads ``vit`` as one more checkpoint (``--models`` takes the words after
    it); say so instead of "1 names for 3 models" when the extra words are not files."""
    if not names:
        return
    given = [n.strip() for n in names.split(",")]
    total = len(models) + len(more_models)
    strays = [str(p) for p in more_models if not Path(p).exists()]
    if len(given) != total and strays:
        raise MedauditError(
            f"{', '.join(strays)}: read as checkpoints, but no such file; --names takes one comma-separated "
            f"value (--names {','.join([*given, *strays])})", param="names")

