"""Report rendering: snapshot (report.json) -> figures, self-contained HTML and PDF.

Reads the snapshot only (through :mod:`medaudit.snapshot`); never computes a metric and never
runs a model. See docs/report-schema.md and templates/README.md.
"""

from medaudit.report.writer import FORMATS, check_formats, check_output_dir, render_from_snapshot, write_report

__all__ = ["FORMATS", "check_formats", "check_output_dir", "render_from_snapshot", "write_report"]
