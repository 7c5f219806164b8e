"""``medaudit gate``: fail CI when a report misses its requirements or regresses."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors
from medaudit.gate import (
    ON_CHOICES,
    format_table,
    load_snapshot,
    run_gates,
    write_json,
    write_junit,
    write_markdown,
)

_PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.argument("report", type=_PATH)
@click.option("--require", "-r", "requires", multiple=True, metavar="EXPR",
              help='Requirement [MODEL:]METRIC[CLASS] OP VALUE, e.g. "recall[glioma]>=0.95"; clinical use: '
                   '"net_benefit@0.1>treat_all", "ppv@prev=0.02>=0.3", "coverage[glioma]>=0.9"; subgroups '
                   '(disease vs healthy): "recall{site=B}>=0.9", "min_group(recall, site)>=0.85", '
                   '"max_gap(recall, sex)<=0.05" (docs/gates.md). Repeatable.')
@click.option("--on", "on", type=click.Choice(ON_CHOICES), default="point",
              show_default=True,
              help="Compare the point estimate or a 95% CI bound (lower: robust recall floors; "
                   "conservative: the bound least favourable to passing).")
@click.option("--baseline", type=_PATH, metavar="OLD.json", help="Earlier report.json to compare against.")
@click.option("--max-drop", "max_drops", multiple=True, metavar="SPEC",
              help="Allowed drop vs --baseline, [MODEL:]METRIC[CLASS]=DROP, e.g. recall=0.02 (every class) "
                   "or auc=0.01. For ece/brier/missed_disease_rate a drop is an increase. Repeatable.")
@click.option("--allow-partial", is_flag=True,
              help="Gate averages taken over only some classes (e.g. macro_f1 on a split without positives) "
                   "on their value, and let min_group/max_group/max_gap leave out groups too few to estimate; "
                   "by default both are undefined and fail. The note stays in the output.")
@click.option("--junit", type=_PATH, metavar="FILE", help="Write JUnit XML (one testcase per check).")
@click.option("--markdown", type=_PATH, metavar="FILE", help="Write a Markdown summary (CI job summary).")
@click.option("--json", "json_path", type=_PATH, metavar="FILE", help="Write the results as JSON.")
@handle_errors
def gate(report: Path, requires: tuple[str, ...], on: str, baseline: Path | None, max_drops: tuple[str, ...],
         allow_partial: bool, junit: Path | None, markdown: Path | None, json_path: Path | None) -> None:
    """Check REPORT.json against requirements and/or a baseline report.

    \b
    Exit codes: 0 all checks pass, 1 a check failed (an undefined value fails,
    and so does a skipped clinical-use block, an average over only some
    classes or a subgroup too few to estimate, unless --allow-partial), 2 bad
    input (unknown model/class/metric/column/group, unreadable file, schema
    mismatch, a number the report was not asked for: another @prev=P, no
    --cost, a net_benefit@T off the grid, subgroups without --group-by).
    \b
    Examples:
      medaudit gate report.json -r "recall[glioma]>=0.95" --on lower
      medaudit gate report.json -r "resnet18:auc>=0.9" -r "missed_disease_rate<=0.02"
      medaudit gate report.json --baseline released/report.json --max-drop recall=0.02
      medaudit gate report.json -r "net_benefit@0.1>treat_all" -r "ppv@prev=0.02>=0.3" --on conservative
      medaudit gate report.json -r "min_group(recall, site)>=0.85" -r "max_gap(recall, sex)<=0.05" --on conservative
    """
    snapshot = load_snapshot(report)
    old = load_snapshot(baseline) if baseline is not None else None
    result = run_gates(snapshot, list(requires), on=on, baseline=old, max_drops=list(max_drops),
                       allow_partial=allow_partial)
    if junit:
        write_junit(result, junit)
    if markdown:
        write_markdown(result, markdown)
    if json_path:
        write_json(result, json_path)
    click.echo(format_table(result))
    if not result.passed:
        raise click.exceptions.Exit(1)
