"""CLAIM 2024 (Checklist for Artificial Intelligence in Medical Imaging, 2024 update): the items an
audit can answer.

Source of the item list: the issue's transcription (issue 17) of Tejani AS, Klontzas ME, Gatti AA,
et al. "Checklist for Artificial Intelligence in Medical Imaging (CLAIM): 2024 Update."
Radiology: Artificial Intelligence 2024;6(4):e240300.

Verification (search tool, 2026-12-03): no copy of the 2024 checklist's numbered items was found.
What was found is the CLAIM **2020** numbering (Mongan et al., Radiol Artif Intell 2020; item
table in Koçak et al., Diagn Interv Radiol 2025, PMC12417908: 19 "sample size determination",
20 "data partitioning method"), which differs from the 2024 numbers used here (the 2024 update
added items; 19 partitions, 20 disjointness, 21 sample size follow the issue). No item below is
therefore marked verified: every output shows them as "number not verified".
"""

from __future__ import annotations

from medaudit.checklists import facts as f
from medaudit.checklists.items import Item, author_part

NAME = "claim2024"
TITLE = "CLAIM 2024 (Checklist for Artificial Intelligence in Medical Imaging)"
SOURCE = "Tejani et al., Radiology: Artificial Intelligence 2024;6(4):e240300"
SOURCES = __doc__

ITEMS = (
    Item("19", "Data partitions: how data were assigned to training, validation and test, with the number "
               "of cases and the class balance in each", "data",
         (f.partitions, f.class_balance, f.validation_split)),
    Item("20", "Level at which the partitions are disjoint (patient, image)", "data",
         (f.patient_disjointness, f.image_disjointness)),
    Item("21", "Intended sample size and how it was determined", "risk",
         (f.test_size, f.sensitivity_precision, author_part("intended sample size", "target size and its rationale"))),
    Item("29", "Statistical measures of significance and uncertainty (e.g. confidence intervals)", "performance",
         (f.ci_methods, f.significance_tests)),
    Item("30", "Robustness or sensitivity analysis", "robustness", (f.robustness,)),
    Item("31", "Methods for explainability or interpretability (e.g. saliency maps) and how they were validated",
         "gallery", (f.saliency, f.saliency_validity)),
    Item("32", "Evaluation on internal test data held out from development", "performance", (f.internal_testing,)),
    Item("33", "Evaluation on external test data (another source or site)", "external", (f.external_testing,)),
    Item("35", "Flow of cases: inclusion and exclusion, with counts", "data",
         (f.inclusion_counts, author_part("eligibility criteria", "inclusion and exclusion criteria of the study"))),
    Item("36", "Demographic and clinical characteristics of cases in each partition", "data", (f.demographics,)),
    Item("37", "Performance metrics of the final model(s) with 95% confidence intervals", "performance",
         (f.headline_cis, f.headline_intervals)),
    Item("38", "Estimates of diagnostic accuracy and their precision, including ROC analysis", "performance",
         (f.roc_auc, f.thresholds)),
    Item("39", "Failure analysis of incorrectly classified cases", "risk", (f.confusion, f.error_analysis)),
)
