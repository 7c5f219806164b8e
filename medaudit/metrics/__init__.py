"""Audit metrics: pure functions of labels, predictions and probabilities (numpy, scipy, scikit-learn; never torch).

Public API::

    compute_metrics(y_true, probs, class_names, task, *, n_bootstrap=1000, seed=0, ece_bins=15)
    fn_risk(y_true, y_pred, class_names, negative_classes, sample_ids)
    operating_points(y_true_test, score_test, *, y_true_val=None, score_val=None, target_sensitivity=0.95)
    detect_negative_classes(class_names)
    wilson_interval(k, n, alpha=0.05)
    paired_bootstrap_diff(y_true, pred_a, pred_b, class_names, *, negative_classes=(), n_bootstrap=1000, seed=0)
    mcnemar_exact(correct_a, correct_b), delong_test(y_true, score_a, score_b), holm(p_values)

Modules, one owner per rule:

* ``classification`` — count-based rates and their undefined (NaN) policy; the count layouts.
* ``curves`` — AUC/AP from weighted sums; ROC/PR points.  ``calibration`` — ECE, Brier, bins.
* ``intervals`` — Wilson intervals, value objects, the stratified bootstrap draws and the
  percentile interval rule.  ``resample`` — the one resampling engine (weighted sums, chunks, threads).
* ``risk`` — negative classes, the missed-disease rule, operating points.
* ``summary`` — ``compute_metrics``; ``paired`` — bootstrap of differences between two models;
  ``significance`` — McNemar, DeLong, Holm.
"""

from medaudit.metrics.intervals import wilson_interval
from medaudit.metrics.paired import paired_bootstrap_diff
from medaudit.metrics.risk import detect_negative_classes, fn_risk, operating_points
from medaudit.metrics.significance import delong_test, holm, mcnemar_exact
from medaudit.metrics.summary import compute_metrics

__all__ = [
    "compute_metrics",
    "delong_test",
    "detect_negative_classes",
    "fn_risk",
    "holm",
    "mcnemar_exact",
    "operating_points",
    "paired_bootstrap_diff",
    "wilson_interval",
]
