from iadbench.api import DetectorSpec, hookimpl


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name="feature_ae",
            factory="iadbench_feature_ae.detector:FeatureAE",  # imported on first use; params: FeatureAE's signature
            backbone_param="backbone",
            weights_param="weights",
            description="Feature autoencoder: reconstruction error of pretrained EfficientNet-Lite features",
            version="1",
            tags=("reconstruction", "pretrained-backbone", "trained"),
            # in --all: its fit on a factory category takes ~7 s (29 images, 25 epochs;
            # runs/inhouse-factory), and it beats pixel_gaussian there (mean image AUROC 0.869)
        )
    )
