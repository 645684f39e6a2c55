"""Keeping anomalib offline and quiet.

anomalib asks timm (``pretrained=True``) or torchvision (``weights=...``) for ImageNet
weights, which means a hub download. Inside :func:`offline_backbones` those calls build
the network without weights and load ours from ``iadbench.backbones`` instead, or fail
at once with a one-line InputError; any other download attempt fails the same way.
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from iadbench.api import InputError

StateDictFn = Callable[[str], dict[str, torch.Tensor]]

# torchvision builders anomalib calls by name (CFA, UniNet). Their ResNet key layout
# is the same as timm's, so one state dict serves both.
_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "wide_resnet50_2")


def base_arch(model_name: str) -> str:
    """timm names may carry a weights tag ("wide_resnet50_2.tv_in1k"); we key on the arch."""
    return model_name.split(".", 1)[0]


def pretrained_state_dict(arch: str, weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``arch`` in timm's key layout, from the harness (offline)."""
    from iadbench.backbones import pretrained_state_dict as harness_state_dict

    return harness_state_dict(arch, weights)


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    """Load a full-model state dict into a (possibly features-only) network: extra keys
    (the classifier head) are fine, a backbone tensor left unfilled is not."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: the weights are for another arch
        first = str(exc).strip().splitlines()[-1].strip()
        raise InputError(f"{arch}: pretrained weights do not fit the network ({first})") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise InputError(
            f"{arch}: pretrained weights leave {len(missing)} backbone tensors unfilled "
            f"(e.g. {missing[0]})"
        )


def _refuse_download(*args, **kwargs):
    url = next((a for a in args if isinstance(a, str)), kwargs.get("url", "?"))
    raise InputError(f"needs a download ({url}), and this harness runs offline")


@contextmanager
def offline_backbones(state_dict_for: StateDictFn) -> Iterator[list[nn.Module]]:
    """Within the block, pretrained timm/torchvision networks get our weights.

    Yields the list of networks that received pretrained weights (the backbones),
    filled as anomalib builds them.
    """
    import timm
    import torchvision.models as tvm

    loaded: list[nn.Module] = []
    real_create = timm.create_model

    def create_model(model_name: str, pretrained: bool = False, **kwargs):
        if not pretrained:
            return real_create(model_name, pretrained=False, **kwargs)
        arch = base_arch(model_name)
        # the harness may itself call timm (online hub); it must get the real one
        with mock.patch.object(timm, "create_model", real_create):
            state = state_dict_for(arch)
        kwargs.pop("pretrained_cfg", None)
        model = real_create(arch, pretrained=False, **kwargs)
        load_checked(model, state, arch)
        loaded.append(model)
        return model

    def torchvision_builder(arch: str, real: Callable[..., nn.Module]):
        def build(*args, weights=None, **kwargs):
            model = real(*args, weights=None, **kwargs)
            if weights is not None:
                with mock.patch.object(timm, "create_model", real_create):
                    state = state_dict_for(arch)
                load_checked(model, state, arch)
                loaded.append(model)
            return model

        return build

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(timm, "create_model", create_model))
        for arch in _TORCHVISION_RESNETS:
            stack.enter_context(mock.patch.object(tvm, arch, torchvision_builder(arch, getattr(tvm, arch))))
        stack.enter_context(mock.patch.object(torch.hub, "load_state_dict_from_url", _refuse_download))
        stack.enter_context(mock.patch.object(torch.hub, "download_url_to_file", _refuse_download))
        yield loaded


_NOISY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "anomalib", "timm")


@contextmanager
def quiet() -> Iterator[None]:
    """Silence lightning/anomalib INFO chatter and warnings for the block only."""
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), ExitStack() as stack:
            warnings.simplefilter("ignore")
            # PatchCore's coreset sampler draws a tqdm bar on stderr; silence it
            sampler = sys.modules.get("anomalib.models.components.sampling.k_center_greedy")
            if sampler is not None:
                stack.enter_context(
                    mock.patch.object(sampler, "tqdm", functools.partial(sampler.tqdm, disable=True))
                )
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
