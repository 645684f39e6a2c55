"""Flips and right-angle rotations of labelled defects (images, masks and prior maps alike).

The labelled defects are few; their flipped and rotated copies give the head more
views of each defect. Features come from the transformed image (CNN features are not
flip-invariant, so each copy is a new view), while the unsupervised prior is the
original's map transformed the same way: the prior's Gaussians were fitted to upright
good images, and a flipped object would read as anomalous everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Each transform acts on the two spatial axes (1, 2) of (N, H, W, ...) arrays.
Transform = Callable[[np.ndarray], np.ndarray]

_IDENTITY: Transform = lambda a: a  # noqa: E731
_FLIP_W: Transform = lambda a: a[:, :, ::-1]  # noqa: E731
_FLIP_H: Transform = lambda a: a[:, ::-1]  # noqa: E731
_ROT180: Transform = lambda a: a[:, ::-1, ::-1]  # noqa: E731
_TRANSPOSE: Transform = lambda a: np.swapaxes(a, 1, 2)  # noqa: E731

#: none: the defects as given; hflip: + left-right mirror (objects with a mirror
#: symmetry); flips: + up-down mirror and 180 degree rotation; d4: + the four
#: transposed views (90 degree rotations: textures, round parts; square inputs only).
AUGMENTS: dict[str, tuple[Transform, ...]] = {
    "none": (_IDENTITY,),
    "hflip": (_IDENTITY, _FLIP_W),
    "flips": (_IDENTITY, _FLIP_W, _FLIP_H, _ROT180),
    "d4": (_IDENTITY, _FLIP_W, _FLIP_H, _ROT180, *(lambda a, t=t: t(_TRANSPOSE(a)) for t in (_IDENTITY, _FLIP_W, _FLIP_H, _ROT180))),
}


def views(arrays: tuple[np.ndarray, ...], augment: str) -> list[tuple[np.ndarray, ...]]:
    """Every view of ``arrays`` (each (N, H, W, ...)) under ``augment``'s transforms,
    the identity first; each view's arrays are contiguous."""
    return [tuple(np.ascontiguousarray(t(a)) for a in arrays) for t in AUGMENTS[augment]]
