from __future__ import annotations

import pytest
import torch

from iadbench.api import InputError
from iadbench.precision import native_bf16, resolve_precision, training_autocast, training_layout


def test_auto_follows_the_cpu_and_explicit_choices_stand():
    assert resolve_precision("auto", "x") == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("fp32", "x") == "fp32" and resolve_precision("bf16", "x") == "bf16"
    with pytest.raises(InputError, match=r"^det: precision must be one of auto, bf16, fp32; got 'half'$"):
        resolve_precision("half", "det")


def test_bf16_autocasts_convolutions_and_fp32_leaves_them_alone():
    conv, x = torch.nn.Conv2d(3, 4, 3), torch.rand(1, 3, 8, 8)
    with training_autocast("bf16"):
        assert conv(x).dtype == torch.bfloat16
    with training_autocast("fp32"):
        assert conv(x).dtype == torch.float32
    assert training_layout("bf16") == torch.channels_last and training_layout("fp32") == torch.contiguous_format
