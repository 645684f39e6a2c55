from iadbench.api import DetectorSpec, hookimpl
from iadbench_efficientad.detector import (
    DEFAULT_AE_LR,
    DEFAULT_LR,
    DEFAULT_MINING_QUANTILE,
    DEFAULT_STEPS,
    PAPER_STEPS,
    EfficientAD,
)
from iadbench_efficientad.teacher import TEACHER_CHANNELS


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name=EfficientAD.name,
            factory=EfficientAD,
            params={
                "input_size": 256, "variant": "small", "steps": DEFAULT_STEPS, "lr": DEFAULT_LR, "ae_lr": DEFAULT_AE_LR,
                "weight_decay": 1e-5, "teacher_weights": None, "penalty_dir": None,
                "backbone": "efficientnet_lite0", "teacher_layers": None, "val_fraction": 0.1,
                "mining_quantile": DEFAULT_MINING_QUANTILE, "precision": "auto", "teacher_channels": TEACHER_CHANNELS,
                "predict_precision": "auto",
            },
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
