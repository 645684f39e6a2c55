from iadbench.api import DetectorSpec, hookimpl

#: The paper's training length (Batzner et al., WACV 2024, Sec. 4), recorded beside each run's.
PAPER_STEPS = 70_000


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name="efficientad",
            factory="iadbench_efficientad.detector:EfficientAD",  # imported on first use; params: EfficientAD's signature
            # The ImageNet backbone teaches unless teacher_weights names a distilled PDN.
            backbone_param="backbone",
            description=(
                "EfficientAD (Batzner et al. 2024): PDN student + autoencoder; default teacher is "
                "EfficientNet-Lite0 stride 8+16 features with a fixed projection to 384 channels, "
                "not the paper's distilled WideResNet-101 PDN (teacher_weights=PATH for that)"
            ),
            # 2: the short-budget recipe (100 steps, student lr 1e-3, mining quantile 0.9);
            # 3: bfloat16 mixed-precision training where the CPU has it, 1,000 steps, teacher
            #    at strides 8 + 16 (blocks.2 + blocks.3; was blocks.1 + blocks.2)
            # 4: the student and autoencoder predict in bfloat16 where the CPU has it
            #    (predict_precision; training unchanged)
            version="4",
            tags=("student-teacher", "pretrained-backbone", "trained", "opt-in"),
            # "opt-in": left out of --all until its fit is measured within the make run budget
            preload=("torchvision.transforms.v2.functional",),
            published_training={
                "param": "steps", "value": PAPER_STEPS, "unit": "steps",
                "source": "Batzner et al., WACV 2024, Sec. 4 (70,000 iterations, batch 1)",
            },
        )
    )
