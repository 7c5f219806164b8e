"""TRIPOD+AI (Collins GS, Moons KGM, Dhiman P, et al. BMJ 2024;385:e078378): the items an audit can
answer.

Verification (search tool, 2026-12-03): a transcription of the 27-item TRIPOD+AI checklist
(skills.sh "tripod-check", citing doi:10.1136/bmj-2023-078378) confirms the item count and the
numbering of items 1-6c (3a-3c, 5a-5b, 6a-6c); the excerpts returned did not reach items 10-23b,
so the numbers below (from the issue's transcription) are not marked verified.
"""

from __future__ import annotations

from medaudit.checklists import facts as f
from medaudit.checklists.items import Item, author_part

NAME = "tripod-ai"
TITLE = "TRIPOD+AI (prediction model studies using regression or machine learning)"
SOURCE = "Collins et al., BMJ 2024;385:e078378"
SOURCES = __doc__

ITEMS = (
    Item("10", "Sample size: how it was arrived at, and that it suffices (the precision the evaluation data give)",
         "risk", (f.test_size, f.sensitivity_precision,
                  author_part("how the size was arrived at", "sample-size calculation or rationale"))),
    Item("12e", "Performance measures: discrimination, calibration and clinical utility", "performance",
         (f.discrimination, f.calibration, f.clinical_utility)),
    Item("12f", "Model updating arising from the evaluation (e.g. recalibration)", "clinical", (f.recalibration,)),
    Item("13", "Class imbalance: how it was handled and why", "data", (f.class_balance, f.imbalance_handling)),
    Item("15", "Thresholds for the model output and how they were chosen", "risk", (f.thresholds, f.threshold_rule)),
    Item("20c", "Comparison of the development data with the evaluation data (outcome, demographics, shift)", "data",
         (f.class_balance, f.demographics, f.external_shift)),
    Item("21", "Number of participants and outcome events in each analysis", "performance", (f.events_per_analysis,)),
    Item("23a", "Performance estimates with confidence intervals, including for key subgroups", "subgroups",
         (f.headline_cis, f.headline_intervals, f.subgroup_cis)),
    Item("23b", "Heterogeneity of performance across clusters (sites, hospitals)", "subgroups", (f.site_heterogeneity,)),
)
