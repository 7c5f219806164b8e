"""Report rendering: snapshot (report.json) -> figures, self-contained HTML and PDF.

Reads the snapshot only; never computes a metric. See docs/report-schema.md and
templates/README.md.
"""

from medaudit.report.writer import FORMATS, check_output_dir, render_from_snapshot, write_report

__all__ = ["FORMATS", "check_output_dir", "render_from_snapshot", "write_report"]
