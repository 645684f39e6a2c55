"""The built-in metrics: registered through the same hook a third-party plugin uses.

Bootstrap intervals (``interval``) are asked for where they are cheap: image and pixel
AUROC and image AP have exact fast resamples, and F1 is recomputed on the resampled
scores (a few milliseconds in all). Pixel AP, AUPRO and AUPIMO would re-rank millions of pixels 1,000 times, and
precision, recall, accuracy and the false-alarm rate already have Clopper-Pearson
intervals where it matters (the record's verdicts), so those go without.
"""

from iadbench.api import MetricSpec, hookimpl

# The metric functions are named by reference ("module:function"), imported on first
# use: loading scikit-learn and SciPy just to list the metrics would cost a second.

_AT_THRESHOLD = "at the threshold fixed on good training images' calibration scores (never the test set)"


@hookimpl
def register_metrics(register):
    specs = [
        MetricSpec(
            "image_auroc",
            "iadbench.metrics.image:image_auroc",
            level="image",
            headline=True,
            description="Image AUROC of the detector's image scores",
            label="image AUROC",
            short="img AUROC",
            summary=True,
            interval="image",
            resample="iadbench.metrics.auroc_resampling:image_auroc_resamples",
        ),
        MetricSpec(
            "image_ap",
            "iadbench.metrics.image:image_ap",
            level="image",
            description="Image average precision of the detector's image scores",
            label="image AP",
            short="img AP",
            interval="image",
            resample="iadbench.metrics.image:image_ap_resamples",
        ),
        MetricSpec(
            "image_f1_max",
            "iadbench.metrics.image:image_f1_max",
            level="image",
            description=(
                "Image F1-max: oracle upper bound, the best F1 over all thresholds, "
                "threshold chosen on the test set itself"
            ),
            label="image F1-max",
            short="F1-max",
            oracle_of="f1",
        ),
        MetricSpec(
            "pixel_auroc",
            "iadbench.metrics.pixel:pixel_auroc",
            level="pixel",
            headline=True,
            description="Pixel AUROC over every pixel of every test image",
            label="pixel AUROC",
            short="px AUROC",
            summary=True,
            interval="pixel",
            resample="iadbench.metrics.auroc_resampling:pixel_auroc_resamples",
        ),
        MetricSpec(
            "pixel_ap",
            "iadbench.metrics.pixel:pixel_ap",
            level="pixel",
            description="Pixel average precision over every pixel of every test image",
            label="pixel AP",
            short="px AP",
        ),
        MetricSpec(
            "aupro",
            "iadbench.metrics.aupro:pixel_aupro",
            level="pixel",
            headline=True,
            description=(
                "Area under the per-region-overlap curve (8-connected regions, normal "
                "images included in the FPR), integrated to FPR 0.3, normalised to [0, 1]"
            ),
            label="AUPRO",
            summary=True,
        ),
        MetricSpec(
            "auspro",
            "iadbench.metrics.spro:pixel_auspro",
            level="pixel",
            description=(
                "MVTec LOCO's AUsPRO: area under the saturated per-region-overlap curve (each annotated "
                "region found in full once its defects_config saturation is covered; false positives "
                "counted on good test images only), integrated to FPR 0.05, normalised to [0, 1]; "
                "undefined for datasets without per-region annotations"
            ),
            label="AUsPRO",
        ),
        MetricSpec(
            "seg_f1",
            "iadbench.metrics.segf1:seg_f1",
            level="pixel",
            description=(
                "MVTec AD 2's SegF1: pixel F1 pooled over every pixel of the test set, a pixel "
                "flagged when its map value is above the pixel threshold fixed on good training "
                "images' maps (never the test set)"
            ),
            label="SegF1",  # at the pixel threshold, not the image one: needs_threshold stays False
        ),
        MetricSpec(
            "precision",
            "iadbench.metrics.classification:precision",
            level="image",
            description=f"Image precision {_AT_THRESHOLD}",
            label="precision",
            needs_threshold=True,
        ),
        MetricSpec(
            "recall",
            "iadbench.metrics.classification:recall",
            level="image",
            description=f"Image recall {_AT_THRESHOLD}",
            label="recall",
            needs_threshold=True,
        ),
        MetricSpec(
            "f1",
            "iadbench.metrics.classification:f1",
            level="image",
            headline=True,
            description=f"Image F1 {_AT_THRESHOLD}",
            label="F1",
            summary=True,
            needs_threshold=True,
            interval="image",
            resample="iadbench.metrics.classification:f1_resamples",
        ),
        MetricSpec(
            "accuracy",
            "iadbench.metrics.classification:accuracy",
            level="image",
            description=f"Image accuracy {_AT_THRESHOLD}",
            label="accuracy",
            needs_threshold=True,
        ),
        MetricSpec(
            "aupimo",
            "iadbench.metrics.aupimo:pixel_aupimo",
            level="pixel",
            description=(
                "Mean over defective images of AUPIMO (Bertoldo et al. 2024): each image's own "
                "defect-pixel TPR integrated over log FPR in [1e-5, 1e-4], the FPR measured on good "
                "test images' pixels; anomalib's definition, every good-pixel score a threshold"
            ),
            label="AUPIMO",
        ),
        MetricSpec(
            "pg5",
            "iadbench.metrics.pgn_pbn:pg5",
            level="image",
            description=(
                "PG5 (anomalib's PGn): share of good test images below the 5%-quantile of the "
                "defective images' scores, TNR at 5% FNR; threshold read off the test set"
            ),
            label="PG5",
        ),
        MetricSpec(
            "pb5",
            "iadbench.metrics.pgn_pbn:pb5",
            level="image",
            description=(
                "PB5 (anomalib's PBn): share of defective test images above the 95%-quantile of "
                "the good images' scores, TPR at 5% FPR; threshold read off the test set"
            ),
            label="PB5",
        ),
    ]
    for spec in specs:
        spec.higher_is_better = True
        register(spec)
    register(MetricSpec(
        "fpr",
        "iadbench.metrics.classification:false_alarm_rate",
        higher_is_better=False,
        level="image",
        description=f"False-alarm rate achieved on good test images {_AT_THRESHOLD}",
        label="false-alarm rate",
        short="FPR",
        needs_threshold=True,
    ))
