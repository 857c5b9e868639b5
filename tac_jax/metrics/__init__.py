"""Metrics over confidence scores, oriented so that higher means "more in-distribution /
more likely correct": OOD detection, misclassification detection and selective
classification (with thresholds of guaranteed risk: SGR, Learn then Test), calibration,
reject/defer value, and their uncertainty."""

from tac_jax.metrics.bootstrap import aggregate_seeds, bootstrap_ci, bootstrap_ci_two_sample
from tac_jax.metrics.calibration import Reliability, brier, ece, nll, reliability_bins
from tac_jax.metrics.guarantee import (
    ThresholdResult,
    binomial_upper_bound,
    hoeffding_bentkus_p_value,
    ltt,
    repeated_splits,
    sgr,
)
from tac_jax.metrics.ood import aupr_in, aupr_out, auroc, fpr_at_tpr, ood_metrics, roc_curve
from tac_jax.metrics.selective import (
    accuracy_at_coverage,
    augrc,
    aurc,
    e_augrc,
    e_aurc,
    misclassification_auroc,
    optimal_augrc,
    risk_coverage_curve,
)
from tac_jax.metrics.value import (
    Costs,
    best_threshold,
    disagreement_policy,
    gated_policy,
    selective_value,
    value_at_threshold,
    value_curve,
)

__all__ = [
    "Costs",
    "Reliability",
    "ThresholdResult",
    "accuracy_at_coverage",
    "aggregate_seeds",
    "aupr_in",
    "aupr_out",
    "augrc",
    "aurc",
    "auroc",
    "best_threshold",
    "binomial_upper_bound",
    "bootstrap_ci",
    "bootstrap_ci_two_sample",
    "brier",
    "disagreement_policy",
    "e_augrc",
    "e_aurc",
    "ece",
    "fpr_at_tpr",
    "gated_policy",
    "hoeffding_bentkus_p_value",
    "ltt",
    "misclassification_auroc",
    "nll",
    "ood_metrics",
    "optimal_augrc",
    "reliability_bins",
    "repeated_splits",
    "risk_coverage_curve",
    "roc_curve",
    "selective_value",
    "sgr",
    "value_at_threshold",
    "value_curve",
]
