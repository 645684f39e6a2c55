"""The built-in metrics: registered through the same hook a third-party plugin uses."""

from iadbench.api import MetricSpec, hookimpl
from iadbench.metrics import aupro, classification, image, pixel

_AT_THRESHOLD = "at the threshold fixed on good training images' calibration scores (never the test set)"


@hookimpl
def register_metrics(register):
    specs = [
        MetricSpec(
            "image_auroc",
            image.image_auroc,
            level="image",
            headline=True,
            description="Image AUROC of the detector's image scores",
        ),
        MetricSpec(
            "image_ap",
            image.image_ap,
            level="image",
            description="Image average precision of the detector's image scores",
        ),
        MetricSpec(
            "image_f1_max",
            image.image_f1_max,
            level="image",
            description=(
                "Image F1-max: oracle upper bound, the best F1 over all thresholds, "
                "threshold chosen on the test set itself"
            ),
        ),
        MetricSpec(
            "pixel_auroc",
            pixel.pixel_auroc,
            level="pixel",
            headline=True,
            description="Pixel AUROC over every pixel of every test image",
        ),
        MetricSpec(
            "pixel_ap",
            pixel.pixel_ap,
            level="pixel",
            description="Pixel average precision over every pixel of every test image",
        ),
        MetricSpec(
            "aupro",
            aupro.pixel_aupro,
            level="pixel",
            headline=True,
            description=(
                "Area under the per-region-overlap curve (8-connected regions, normal "
                "images included in the FPR), integrated to FPR 0.3, normalised to [0, 1]"
            ),
        ),
        MetricSpec(
            "precision",
            classification.precision,
            level="image",
            description=f"Image precision {_AT_THRESHOLD}",
        ),
        MetricSpec(
            "recall",
            classification.recall,
            level="image",
            description=f"Image recall {_AT_THRESHOLD}",
        ),
        MetricSpec(
            "f1",
            classification.f1,
            level="image",
            headline=True,
            description=f"Image F1 {_AT_THRESHOLD}",
        ),
        MetricSpec(
            "accuracy",
            classification.accuracy,
            level="image",
            description=f"Image accuracy {_AT_THRESHOLD}",
        ),
    ]
    for spec in specs:
        spec.higher_is_better = True
        register(spec)
    register(MetricSpec(
        "fpr",
        classification.false_alarm_rate,
        higher_is_better=False,
        level="image",
        description=f"False-alarm rate achieved on good test images {_AT_THRESHOLD}",
    ))
