from iadbench.api import DetectorSpec, hookimpl


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name="mixed",
            factory="iadbench_mixed.detector:Mixed",  # imported on first use; params: Mixed's signature
            backbone_param="backbone",
            weights_param="weights",
            description="Mixed supervision: PaDiM's map + a segmentation head trained on labelled defects (--defects-in-train)",
            version="1",
            # "mixed-supervision": without labelled defects it is PaDiM (same scores), so
            # --all runs it only in a --defects-in-train sweep
            tags=("mixed-supervision", "distribution", "pretrained-backbone", "trained"),
        )
    )
