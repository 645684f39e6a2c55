from iadbench.api import DetectorSpec, hookimpl


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name="padim",
            factory="iadbench_padim.detector:Padim",  # imported on first use; params: Padim's signature
            backbone_param="backbone",
            weights_param="weights",
            description="PaDiM (Defard et al. 2021): per-position Gaussians, Mahalanobis distance",
            # 2: blocks.2 + blocks.4 with all channels; 3: input 320 px; 4: 256 px again, the
            # study's part 3 (test-size weights, factory v2): leaderboards/defaults-study.md
            version="4",
            tags=("distribution", "pretrained-backbone"),
        )
    )
