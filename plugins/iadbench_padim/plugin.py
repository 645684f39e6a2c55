from iadbench.api import DetectorSpec, hookimpl
from iadbench_padim.detector import Padim


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name=Padim.name,
            factory=Padim,
            params={
                "input_size": 256, "backbone": "efficientnet_lite0", "layers": None, "weights": None,
                "n_features": None, "epsilon": 0.01, "sigma": 4.0,
            },
            description="PaDiM (Defard et al. 2021): per-position Gaussians, Mahalanobis distance",
            # 2: blocks.2 + blocks.4 with all channels; 3: input 320 px; 4: 256 px again, the
            # study's part 3 (test-size weights, factory v2): leaderboards/defaults-study.md
            version="4",
            tags=("distribution", "pretrained-backbone"),
        )
    )
