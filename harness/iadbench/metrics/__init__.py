"""The harness's metrics, computed from raw detector outputs (never by a detector).

One module per idea, each a set of pure functions over numpy arrays:

- image:          image AUROC, AP and the F1-max oracle (threshold chosen on the test set)
- pixel:          pixel AUROC and AP over all pixels of all test images
- aupro:          area under the per-region-overlap curve to FPR 0.3, normalised
- threshold:      the threshold rules (re-exported from iadbench.calibration.rules)
- classification: precision, recall, F1 and accuracy at that threshold
- compute:        compute_metrics, which runs registered MetricSpecs on EvalData
- intervals:      bootstrap intervals and paired p-values of the metrics whose specs ask
- auroc_resampling: the exact fast resamples of image and pixel AUROC

Functions that take EvalData raise UndefinedMetric with a reason where a metric has
no meaning (one class only, constant scores, no masks); compute_metrics turns that
into NaN plus the reason. Only those adapters and the threshold API are re-exported
here; array functions live in their modules (``iadbench.metrics.aupro.aupro`` etc.),
so no re-export hides a submodule of the same name.
"""

from iadbench.calibration.rules import (
    DEFAULT_RULE,
    ThresholdRule,
    UndefinedThreshold,
    describe_rule,
    fit_threshold,
    parse_rule,
)
from iadbench.metrics.aupro import pixel_aupro
from iadbench.metrics.classification import accuracy, f1, precision, predict, recall
from iadbench.metrics.compute import compute_metrics
from iadbench.metrics.image import best_f1, image_ap, image_auroc, image_f1_max
from iadbench.metrics.pixel import pixel_ap, pixel_auroc

__all__ = [
    "DEFAULT_RULE",
    "ThresholdRule",
    "UndefinedThreshold",
    "accuracy",
    "best_f1",
    "compute_metrics",
    "describe_rule",
    "f1",
    "fit_threshold",
    "image_ap",
    "image_auroc",
    "image_f1_max",
    "parse_rule",
    "pixel_ap",
    "pixel_aupro",
    "pixel_auroc",
    "precision",
    "predict",
    "recall",
]
