from iadbench.api import DetectorSpec, hookimpl
from iadbench_baselines.pixel_gaussian import PixelGaussian


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name=PixelGaussian.name,
            factory=PixelGaussian,
            params={"input_size": 128, "blur_sigma": 2.0, "min_std": 0.02},
            description="Per-pixel Gaussian on blurred colours (no pretrained weights; a floor)",
            version="1",
            tags=("baseline",),
        )
    )
