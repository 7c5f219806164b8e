"""Audit metrics: pure functions of labels and predicted probabilities.

Public API::

    compute_metrics(y_true, probs, class_names, task, *, n_bootstrap=1000, seed=0, ece_bins=15)
    fn_risk(y_true, y_pred, class_names, negative_classes, sample_ids)
    operating_points(y_true_test, score_test, *, y_true_val=None, score_val=None, target_sensitivity=0.95)
    detect_negative_classes(class_names)
    wilson_interval(k, n, alpha=0.05)

Only numpy is imported here; scipy and scikit-learn load when a function needs them.
"""

from medaudit.metrics.intervals import wilson_interval
from medaudit.metrics.risk import detect_negative_classes, fn_risk, operating_points
from medaudit.metrics.summary import compute_metrics

__all__ = ["compute_metrics", "detect_negative_classes", "fn_risk", "operating_points", "wilson_interval"]
