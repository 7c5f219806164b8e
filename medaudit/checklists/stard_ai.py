"""STARD-AI (Sounderajah V, et al. Nature Medicine 2025; protocol: BMJ Open 2021;11:e047709): the
items an audit can answer.

Verification (search tool, 2026-12-03): the protocol (BMJ Open 2021) was found; no copy of the
published checklist's numbered items was. The numbers below follow the issue's transcription
(15c, 21-23, 25, 28-31, 40b) and none is marked verified.
"""

from __future__ import annotations

from medaudit.checklists import facts as f
from medaudit.checklists.items import Item, author_part

NAME = "stard-ai"
TITLE = "STARD-AI (diagnostic accuracy studies of AI)"
SOURCE = "Sounderajah et al., Nature Medicine 2025"
SOURCES = __doc__

ITEMS = (
    Item("15c", "Positivity cut-offs of the index test: definition and whether pre-specified or exploratory", "risk",
         (f.thresholds, f.threshold_rule)),
    Item("21", "Analyses of variability in diagnostic accuracy (subgroups, corrupted inputs)", "subgroups",
         (f.subgroup_cis, f.robustness)),
    Item("22", "Intended sample size and how it was determined", "risk",
         (f.test_size, f.sensitivity_precision, author_part("intended sample size", "target size and its rationale"))),
    Item("23", "Error analysis and assessment of fairness across groups", "risk", (f.error_analysis, f.subgroup_gaps)),
    Item("25", "Characteristics of the participants in each data split", "data", (f.partitions, f.demographics)),
    Item("28", "Representativeness of the data for the target population", "data",
         (f.demographics, author_part("target population", "comparison with the intended-use population"))),
    Item("29", "How the external test set differs from the development data", "external", (f.external_shift,)),
    Item("30", "Cross-tabulation of index-test results by the reference standard", "performance", (f.confusion,)),
    Item("31", "Estimates of diagnostic accuracy and their precision (95% CIs)", "performance",
         (f.headline_cis, f.headline_intervals)),
    Item("40b", "Stored, auditable outputs (data, model and prediction hashes; versions)", "appendix",
         (f.data_fingerprint, f.checkpoint_hashes, f.prediction_files, f.run_record)),
)
