"""Features of pretrained backbones, for the detectors built on ``iadbench.backbones``.

- a feature cache on disk, shared by every process of a grid run (``extract_features``,
  ``cache_disabled`` around latency loops, ``IADBENCH_FEATURE_CACHE=0`` turns it off;
  details in ``iadbench.features.cache``)
- patch-score maps to pixel maps: ``patch_maps_to_pixels`` and ``gaussian_blur``
- ``BackboneMixin``: a detector's lazily built extractor and its cached features

This package is public for plugins; import from it, not from its modules
(``cache``, ``maps``, ``mixin``), which may move.
"""

from iadbench.features.cache import STATS, cache_disabled, cache_enabled, extract_features, feature_cache_dir, image_key
from iadbench.features.maps import BLUR_MODES, gaussian_blur, patch_maps_to_pixels
from iadbench.features.mixin import BackboneMixin

__all__ = [
    "BLUR_MODES",
    "STATS",
    "BackboneMixin",
    "cache_disabled",
    "cache_enabled",
    "extract_features",
    "feature_cache_dir",
    "gaussian_blur",
    "image_key",
    "patch_maps_to_pixels",
]
