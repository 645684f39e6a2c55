from iadbench.api import DetectorSpec, hookimpl
from iadbench_conv_ae.detector import DEFAULT_EPOCHS, ConvAE


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name=ConvAE.name,
            factory=ConvAE,
            params={
                "input_size": 256, "latent": 100, "epochs": DEFAULT_EPOCHS, "lr": 2e-4, "batch": 8,
                "sigma": 4.0, "augment": False, "precision": "auto",
            },
            description="Convolutional autoencoder from scratch (no pretrained weights), MSE + SSIM residual",
            version="1",
            tags=("reconstruction", "from-scratch", "trained", "opt-in"),
            # "opt-in": left out of --all until its fit is measured within the make run budget
        )
    )
