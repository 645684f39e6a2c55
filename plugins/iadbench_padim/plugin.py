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
            version="2",  # 2: defaults from the defaults study (blocks.2 + blocks.4, all 152 channels for lite0)
            tags=("distribution", "pretrained-backbone"),
        )
    )
