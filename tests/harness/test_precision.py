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


def test_an_isa_ceiling_below_bfloat16_is_treated_as_a_cpu_without_it(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 is how an AMX machine shows what a line PC without
    bfloat16 units gets: auto then resolves to float32, and OpenVINO's bf16 runtime
    computes in float32 (its plugin still lists BF16 but cannot compile in it)."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert not native_bf16() and resolve_precision("auto", "x") == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # a ceiling above it changes nothing
    assert native_bf16() == any(bool(getattr(torch.cpu, n, lambda: False)()) for n in
                                ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    pytest.importorskip("openvino", reason="openvino not installed (pip install 'iadbench[openvino]')")
    from iadbench.deploy.openvino import _precision

    class ListsBF16:  # what the CPU plugin reports on this Xeon, ceiling or not; a real plugin
        # loaded under the ceiling would keep it for the rest of the process (its bf16 tests)
        def get_property(self, device, key):
            return ["FP32", "BF16", "FP16", "INT8", "BIN", "EXPORT_IMPORT"]

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert _precision(ListsBF16(), "openvino-bf16") == "f32"
