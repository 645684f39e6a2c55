from iadbench.api import DetectorSpec, hookimpl


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name="pixel_gaussian",
            factory="iadbench_baselines.pixel_gaussian:PixelGaussian",  # imported on first use; params: PixelGaussian's signature
            description="Per-pixel Gaussian on blurred colours (no pretrained weights; a floor)",
            version="1",
            tags=("baseline",),
        )
    )
