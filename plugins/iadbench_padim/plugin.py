from iadbench.api import DetectorSpec, hookimpl
from iadbench_padim.detector import Padim


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name=Padim.name,
            factory=Padim,  # params: Padim's signature
            backbone_param="backbone",
            weights_param="weights",
            description="PaDiM (Defard et al. 2021): per-position Gaussians, Mahalanobis distance",
            # 2: blocks.2 + blocks.4 with all channels; 3: input 320 px; 4: 256 px again, the
            # study's part 3 (test-size weights, factory v2): leaderboards/defaults-study.md
            version="4",
            tags=("distribution", "pretrained-backbone"),
        )
    )
