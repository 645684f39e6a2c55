"""The parity gate a non-eager runtime passes before it scores: its scores and maps on
labelled check images against the detector's eager float32 ones.

Check images are good images (the user's held-out good images where given, else
``export.check_images``' image-like fields) and a copy of each with a painted
rectangle, the synthetic defect, whose pixels are the defect mask. A runtime is refused
when any of these leaves its bound (``BOUNDS``, per runtime):

- the largest relative score difference from eager (``rtol``): scores are compared
  with the model's threshold, which eager scores fixed;
- Spearman's rank correlation of the scores with eager's (``min_spearman``): a
  detector ranks images, and a graph that reorders them is broken however close its
  values are on average;
- the change of image AUROC (good against painted) and of pixel AUROC (painted pixels
  against the rest) from eager's, at most ``MAX_AUROC_CHANGE``.

The refusal is one line naming the runtime, each failed number and its bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from iadbench.errors import InputError
from iadbench.types import Prediction

MAX_AUROC_CHANGE = 0.005
#: Good check images made when the user gave none (each gets a painted twin).
SYNTHETIC_GOOD = 6


@dataclass(frozen=True)
class Bound:
    rtol: float  # largest relative score difference from eager float32
    min_spearman: float  # smallest rank correlation of the scores with eager's


#: Float32 graphs compute what eager computes (differences are summation order); fp16
#: and bf16 round to 11 and 8 bits (bf16: 5e-2, a few times the 1.1e-2 that eager
#: bfloat16 efficientad is off float32 on MVTec bottle, an untrained one 4e-2); INT8 trades a few per cent of the score for speed,
#: the ranking must survive it.
BOUNDS = {
    "onnx": Bound(rtol=1e-3, min_spearman=0.999),
    "openvino": Bound(rtol=1e-3, min_spearman=0.999),
    "openvino-fp16": Bound(rtol=2e-2, min_spearman=0.99),
    "openvino-bf16": Bound(rtol=5e-2, min_spearman=0.99),
    "openvino-int8": Bound(rtol=0.1, min_spearman=0.98),
}


class ParityRefused(InputError):
    """A runtime whose scores leave its parity bound against eager."""


@dataclass
class CheckSet:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # 0 good, 1 painted
    masks: np.ndarray  # bool (N, H, W)
    source: str  # where the good ones came from


def check_set(size: tuple[int, int], good: np.ndarray | None = None, seed: int = 0) -> CheckSet:
    """Good images (``good``, else SYNTHETIC_GOOD image-like fields) and a painted copy of each."""
    from iadbench.deploy.export import check_images

    source = f"{len(good)} held-out good images" if good is not None and len(good) else None
    if source is None:
        good = check_images(size, n=SYNTHETIC_GOOD, seed=seed + 11)
        source = f"{SYNTHETIC_GOOD} synthetic image-like fields"
    painted, masks = zip(*(paint_defect(im, seed + i) for i, im in enumerate(good)))
    images = np.concatenate([good, np.stack(painted)])
    masks = np.concatenate([np.zeros(good.shape[:3], dtype=bool), np.stack(masks)])
    labels = np.repeat([0, 1], len(good))
    return CheckSet(images=images, labels=labels, masks=masks, source=f"{source} and a painted copy of each")


def paint_defect(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with a noisy rectangle (a sixth of the side) in a contrasting colour at
    a seeded place, and its mask."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    rh, rw = max(2, h // 6), max(2, w // 6)
    y, x = int(rng.integers(h // 8, h - rh - h // 8 + 1)), int(rng.integers(w // 8, w - rw - w // 8 + 1))
    out = image.copy()
    colour = 255 - image[y : y + rh, x : x + rw].reshape(-1, 3).mean(axis=0)
    patch = colour + rng.normal(0, 12, (rh, rw, 3))
    out[y : y + rh, x : x + rw] = np.clip(patch, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    mask[y : y + rh, x : x + rw] = True
    return out, mask


def eager_reference(detector, checks: CheckSet) -> Prediction:
    """The detector's own predictions on the check images, in float32 (every graph is)."""
    from iadbench.precision import float32_predictions

    with float32_predictions(detector):
        return detector.predict(checks.images)


@dataclass
class ParityCheck:
    runtime: str
    images: int
    max_score_rel_diff: float
    max_map_rel_diff: float  # of the eager map's largest value
    spearman: float
    image_auroc_eager: float
    image_auroc: float
    pixel_auroc_eager: float
    pixel_auroc: float

    def failures(self, bound: Bound) -> list[str]:
        out = []
        if not self.max_score_rel_diff <= bound.rtol:  # NaN fails too
            out.append(f"scores differ from eager by {self.max_score_rel_diff:.2e} relative (limit {bound.rtol:g})")
        if not self.spearman >= bound.min_spearman:
            out.append(f"rank correlation with eager {self.spearman:.4f} (at least {bound.min_spearman:g})")
        for what, ref, got in (("image", self.image_auroc_eager, self.image_auroc),
                               ("pixel", self.pixel_auroc_eager, self.pixel_auroc)):
            if not abs(got - ref) <= MAX_AUROC_CHANGE:
                out.append(f"{what} AUROC {got:.4f} against eager's {ref:.4f} (change at most {MAX_AUROC_CHANGE:g})")
        return out

    def refusal(self, bound: Bound) -> str:
        return f"{self.runtime} refused on {self.images} check images: " + "; ".join(self.failures(bound))

    def as_dict(self) -> dict:
        return asdict(self)


def compare(runtime_name: str, reference: Prediction, got: Prediction, checks: CheckSet) -> ParityCheck:
    """``got`` (a runtime's predictions on ``checks``) against eager's ``reference``."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    ref = np.asarray(reference.scores, dtype=np.float64)
    out = np.asarray(got.scores, dtype=np.float64)
    rel = np.abs(out - ref) / np.abs(ref).clip(min=1e-12)
    ref_maps, got_maps = np.asarray(reference.maps, np.float64), np.asarray(got.maps, np.float64)
    finite = bool(np.isfinite(out).all() and np.isfinite(got_maps).all())
    rho = float(spearmanr(ref, out).statistic) if finite else float("nan")

    def auroc(y, s) -> float:
        return float(roc_auc_score(y, s)) if np.isfinite(s).all() else float("nan")

    return ParityCheck(
        runtime=runtime_name, images=len(ref),
        max_score_rel_diff=float(rel.max()) if finite else float("nan"),
        max_map_rel_diff=float(np.abs(got_maps - ref_maps).max() / max(np.abs(ref_maps).max(), 1e-12)) if finite else float("nan"),
        spearman=rho,
        image_auroc_eager=auroc(checks.labels, ref), image_auroc=auroc(checks.labels, out),
        pixel_auroc_eager=auroc(checks.masks.ravel(), ref_maps.ravel()),
        pixel_auroc=auroc(checks.masks.ravel(), got_maps.ravel()) if finite else float("nan"),
    )


def gate(runtime, reference: Prediction, checks: CheckSet, bound: Bound | None = None) -> ParityCheck:
    """Run ``runtime`` on the check images; ParityRefused where it leaves its bound
    (``bound``, default ``BOUNDS[runtime.name]``)."""
    bound = bound or BOUNDS[runtime.name]
    check = compare(runtime.name, reference, runtime.predict(checks.images), checks)
    if check.failures(bound):
        raise ParityRefused(check.refusal(bound))
    return check


def accept(recorded: dict, bound: Bound) -> ParityCheck:
    """A check recorded with a cached graph, held to today's bound."""
    check = ParityCheck(**{k: recorded[k] for k in ParityCheck.__dataclass_fields__})
    if check.failures(bound):
        raise ParityRefused(check.refusal(bound))
    return check
