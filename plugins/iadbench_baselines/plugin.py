from iadbench.api import DetectorSpec, hookimpl
from iadbench_baselines.pixel_gaussian import PixelGaussian


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name=PixelGaussian.name,
            factory=PixelGaussian,  # params: PixelGaussian's signature
            description="Per-pixel Gaussian on blurred colours (no pretrained weights; a floor)",
            version="1",
            tags=("baseline",),
        )
    )
