"""The values that flow along the data path: samples, splits, predictions and specs.

Dataset plugin -> Split -> images -> Detector.fit/predict -> Prediction -> metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from iadbench.errors import PluginError
from iadbench.lazy import LazyCallable, reference

if TYPE_CHECKING:  # pragma: no cover
    # numpy only in annotations here: the CLI's start-up (``adbench --help``, plugin
    # registration) imports this module and would otherwise pay for numpy
    import numpy as np

    from iadbench.detector import Detector

GOOD = "good"


@dataclass(frozen=True)
class RegionMask:
    """One annotated defect region in a mask file of its own (MVTec LOCO) and the
    saturations sPRO may give it: rows (pixel value, saturation, relative), of which the
    one whose value the mask's pixels hold applies (LOCO marks each defect type by its
    value; the mask is decoded only when scored). The region counts as found in full
    once ``saturation`` of it is flagged: a fraction of its area when ``relative``, else
    a pixel count at the mask's native size (capped at the area). No rows: 1.0 relative."""

    path: Path
    saturations: tuple[tuple[int, float, bool], ...] = ()


@dataclass(frozen=True)
class DefectRegion:
    """A RegionMask at the detector's input size, for metrics (EvalData.regions):
    ``pixels`` are flat indices into test image ``image``'s (H, W) map and
    ``saturation`` the fraction of them that counts as a full hit, in (0, 1]."""

    image: int
    pixels: np.ndarray
    saturation: float


@dataclass(frozen=True)
class Sample:
    """One image of a split. ``label`` is 0 for good, 1 for defective.

    ``regions``: a defect's regions, one mask file each, where a dataset annotates
    them apart (MVTec LOCO); the image's mask is then their union and ``mask_path``
    the first of them. Empty for every other dataset."""

    path: Path
    label: int = 0
    defect_type: str = GOOD
    mask_path: Path | None = None
    regions: tuple[RegionMask, ...] = ()

    @property
    def is_anomalous(self) -> bool:
        return self.label == 1


@dataclass
class Split:
    """A category's data: good training images and labelled test images.

    ``notes`` carries facts a loader wants recorded with the results, e.g. how many
    defective training images an unsupervised protocol left out.

    ``train_defective``: labelled defective images a detector may learn from (mixed
    supervision), never scored. A loader fills it with a dataset's own labelled
    defective training images (KSDD2's positives); ``--defects-in-train K`` then picks K
    of them, or, for a dataset without any, moves K defective images out of ``test``
    (iadbench.runner.supervision). Only detectors whose ``supervision`` is "mixed" see
    them; an unsupervised detector's fit is the same whatever this holds.
    """

    dataset: str
    category: str
    train: list[Sample]
    test: list[Sample]
    notes: dict[str, Any] = field(default_factory=dict)
    train_defective: list[Sample] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        """True when every defective test image has a mask (pixel metrics defined)."""
        bad = [s for s in self.test if s.is_anomalous]
        return bool(bad) and all(s.mask_path is not None for s in bad)


class Dataset(Protocol):
    """What a dataset plugin's factory returns."""

    def categories(self) -> list[str]:
        """Every category this dataset holds, in a stable order."""

    def split(self, category: str) -> Split:
        """Load (and validate) one category. Raises DatasetError on bad data."""


@dataclass
class Prediction:
    """Raw detector outputs: one score per image, one map per image (input size)."""

    scores: np.ndarray  # (N,) float, higher = more anomalous
    maps: np.ndarray  # (N, H, W) float32, higher = more anomalous

    def __post_init__(self) -> None:
        import numpy as np

        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.maps = np.asarray(self.maps, dtype=np.float32)
        if self.maps.ndim != 3 or self.maps.shape[0] != self.scores.shape[0]:
            raise ValueError(
                f"Prediction needs scores (N,) and maps (N,H,W); got {self.scores.shape} "
                f"and {self.maps.shape}"
            )


@dataclass
class EvalData:
    """Everything a metric function may look at, at the detector's input size.

    ``threshold`` was fixed on good training images' calibration scores, never on the
    test set; ``calibration_scores`` are those scores (each image scored by a model
    that did not fit it), for metrics that fix thresholds of their own.
    ``masks`` is None when the dataset has no pixel ground truth.
    ``pixel_threshold``: the map level fixed the same way on the calibration images'
    map maxima (iadbench.model.fit), for pixel metrics at a threshold (SegF1); None
    when none was fixed. ``regions``: the test set's annotated defect regions with
    their saturations (sPRO), None unless the dataset annotates regions apart.
    """

    labels: np.ndarray  # (N,) int 0/1
    scores: np.ndarray  # (N,) float
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray | None  # (N, H, W) bool
    threshold: float
    defect_types: list[str]
    calibration_scores: np.ndarray | None = None
    pixel_threshold: float | None = None
    regions: list[DefectRegion] | None = None


class _DeclaredParams:
    """``DetectorSpec.params``: as given, or (given None) the factory signature's
    defaults; checked against the signature (iadbench.params.check_spec) the first time
    it is read, which needs the factory imported."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None  # the dataclass default
        state = obj.__dict__
        if "_params_checked" in state:
            return state["_params_checked"]
        from iadbench.params import check_spec, default_params

        given = state.get("_params_given")
        params = default_params(obj.factory) if given is None else given
        state["_params_checked"] = params  # check_spec reads spec.params
        try:
            check_spec(obj)
        except PluginError as exc:
            del state["_params_checked"]
            if obj.plugin:  # found on first use, not by the registry: say whose it is
                raise PluginError(f"plugin '{obj.plugin}': {exc}") from None
            raise
        return params

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["_params_given"] = value
        obj.__dict__.pop("_params_checked", None)


@dataclass
class DetectorSpec:
    """A detector a plugin offers.

    ``factory(**params)`` builds an unfitted Detector: the class, or a reference to it,
    ``"package.module:Class"``, imported on first use (iadbench.lazy) so that listing
    detectors imports no torch. Its signature declares the
    parameters (iadbench.params): ``params`` may be omitted, and is then the
    signature's defaults; where given, every key must be a parameter of the factory
    with the same default (else the plugin is reported broken), and those keys are the
    ones a user may override. A factory taking ``**kwargs`` declares nothing itself:
    then ``params`` are the truth. An unavailable detector stays listed, with why; it
    runs only when named with parameters (e.g. a local weights file) that may make it
    available.

    ``params`` is derived and checked against the signature the first time it is read:
    at once for a factory given as a callable (a disagreement breaks the plugin as the
    registry loads), on first use for a reference (a PluginError naming the plugin).
    """

    name: str
    factory: Callable[..., Detector] | str = LazyCallable()
    params: dict[str, Any] | None = _DeclaredParams()  # None: the factory signature's defaults
    description: str = ""
    version: str = "0"
    available: bool = True
    unavailable_reason: str | None = None
    tags: tuple[str, ...] = ()
    # Heavy modules the cell processes import; the local executor imports them once
    # in its forkserver so each cell does not pay for them again. A factory given as a
    # reference adds its module here.
    preload: tuple[str, ...] = ()
    # The training length the method was published with, for detectors trained by
    # gradient steps: {"param": "max_epochs", "value": 100, "unit": "epochs" | "steps",
    # "source": "where the number comes from"}. Each result records it next to the
    # length actually used, so a leaderboard can flag runs far shorter than the paper's.
    published_training: dict[str, Any] | None = None
    # Peak memory of one cell in MB, where known: the Ray executor asks the scheduler
    # for it with each cell (None: ask for CPUs only).
    memory_mb: int | None = None
    # The params naming the pretrained backbone (an arch name) and its weights file, for
    # the protocol line above leaderboards (iadbench.report.protocol); None: no
    # pretrained backbone, or no weights param.
    backbone_param: str | None = None
    weights_param: str | None = None
    plugin: str = ""  # filled in by the registry

    def __post_init__(self) -> None:
        if self.memory_mb is not None and (
            isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int) or self.memory_mb < 1
        ):
            raise PluginError(f"detector '{self.name}': memory_mb must be a positive integer or None, got {self.memory_mb!r}")
        ref = reference(self, "factory")
        if ref is None:
            self.params  # noqa: B018 - the factory is at hand: derive and check params now
        elif (module := ref.partition(":")[0]) not in self.preload:
            self.preload = (*self.preload, module)


@dataclass(frozen=True)
class Download:
    """A file of a public dataset that ``adbench data get`` fetches, or says how to get.

    ``url`` is the official source; ``filename`` the name it is saved under (default:
    the URL's last segment). ``sha256`` is checked before the file is used; where the
    published record holds only an MD5, ``md5`` instead. Never a checksum nobody
    published: without one the file is used unverified, with a warning. ``size_bytes``
    (when known) is shown first and checked after. ``licence`` is printed before the
    download. ``manual``: ``url`` is a page (a licence form, a login), not the file, so
    ``note`` says how to get it (``DIR`` in it reads as the target folder); ``data get`` then verifies and extracts the file the
    user placed in the target folder (no ``filename``: the user places the extracted
    dataset itself). ``strip``: a folder every archive member sits in, left out on
    extraction so that the dataset's root is ``<DIR>/<subdir>``.
    """

    url: str
    filename: str = ""
    sha256: str | None = None
    md5: str | None = None
    size_bytes: int | None = None
    licence: str = ""
    note: str = ""
    manual: bool = False
    strip: str = ""

    def __post_init__(self):
        for algo, value, length in (("sha256", self.sha256, 64), ("md5", self.md5, 32)):
            if value is not None and (len(value) != length or any(c not in "0123456789abcdefABCDEF" for c in value)):
                raise PluginError(f"Download of {self.url}: {algo} '{value}' is not {length} hex digits")

    @property
    def file(self) -> str | None:
        """The name of the archive in the target folder; None for a manual download
        with no single file."""
        if self.filename:
            return self.filename
        return None if self.manual else self.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


@dataclass
class DatasetSpec:
    """A dataset a plugin offers.

    ``factory(path, **params)`` returns a Dataset (``factory`` and ``detect`` may be
    ``"package.module:attr"`` references, imported on first use). ``path`` is the explicit path a user
    gave, else ``<data-root>/<subdir>``, else None (the plugin decides: the synthetic
    factory generates into a cache, a public benchmark raises DatasetError).
    ``subdir`` is None for a dataset with no fixed home under the data root.
    """

    name: str
    factory: Callable[..., Dataset] | str = LazyCallable()
    subdir: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    version: str = "0"
    plugin: str = ""
    # "Does this folder hold my layout?" (a cheap look at names, no decoding): how
    # `adbench data check PATH` picks the dataset that reads a folder. A dataset
    # without a ``subdir`` (your own folder) is asked before a public benchmark.
    detect: Callable[[Path], bool] | str | None = LazyCallable(required=False)
    # Where ``adbench data get NAME`` fetches the data from (iadbench.downloads).
    downloads: tuple[Download, ...] = ()


@dataclass
class MetricSpec:
    """A metric the harness computes from EvalData. ``fn`` may raise UndefinedMetric.

    The flags tell reports how to show it, so the core names no metric: ``label`` is
    its name in prose ("image AUROC"), ``short`` its column header in narrow tables
    ("img AUROC"); ``headline`` gives it a leaderboard table of its own (and a column
    of `adbench compare`), ``summary`` a column of the table `adbench run` prints at
    the end. ``needs_threshold``: it is computed at the calibrated threshold, so it has
    no value without one. ``oracle_of`` names the metric this one bounds by choosing
    its threshold on the test labels (an F1-max of an F1): the leaderboard's Verdicts
    table shows the two side by side.

    ``interval`` asks for a 95% bootstrap interval per cell (iadbench.metrics.intervals):
    "image" resamples test images stratified by label and recomputes ``fn`` from labels,
    scores, threshold and calibration scores only (no maps); "pixel" resamples whole
    images with their maps and masks (costly: fewer resamples). ``resample``, if given,
    replaces that recomputation: ``resample(data, counts)`` gets (B, N) draw counts of
    each test image and returns the B resampled values at once.

    ``fn`` and ``resample`` may be ``"package.module:function"`` references, imported
    on first use (iadbench.lazy).
    """

    name: str
    fn: Callable[[EvalData], float] | str = LazyCallable()
    higher_is_better: bool = True
    level: str = "image"  # "image" or "pixel"
    description: str = ""
    headline: bool = False  # shown as its own leaderboard table
    plugin: str = ""
    label: str = ""
    short: str = ""
    summary: bool = False
    needs_threshold: bool = False
    oracle_of: str | None = None
    interval: str | None = None  # "image", "pixel" or None
    resample: Callable[[EvalData, np.ndarray], np.ndarray] | str | None = LazyCallable(required=False)

    @property
    def title(self) -> str:
        """The name people read: ``label``, else the registered name."""
        return self.label or self.name

    @property
    def column(self) -> str:
        """A narrow table's header: ``short``, else the title."""
        return self.short or self.title


@dataclass
class ExecutorOptions:
    """How the runner wants cells run; an executor takes what applies to it."""

    workers: int | None = 1  # None: the executor sizes itself (ray: per node)
    timeout_s: float | None = None  # per cell; None: no limit
    preload: list[str] = field(default_factory=list)  # modules to import once, not per cell
    address: str | None = None  # a cluster to join, for executors that take one
    memory_mb: Callable[[Any], int | None] | None = None  # a cell's memory, from its DetectorSpec
    # GPU indices to hand out, one to each running cell whose device is "cuda" (empty: the
    # run computes on the CPU or on one pinned GPU, cuda:N)
    gpus: list[int] = field(default_factory=list)


@dataclass
class ExecutorSpec:
    """Where a run's cells run (``adbench run --executor NAME``), offered by a plugin.

    ``factory(options: ExecutorOptions)`` returns an executor: ``submit(CellTask) ->
    Future[result dict]`` and ``shutdown(cancel=False)`` (iadbench.executors).
    ``check(address)``, called at plan time before the run folder exists, raises
    InputError where the executor cannot run here (e.g. its package is missing).
    ``takes_address``: it can join a cluster at ``--address``. ``factory`` and ``check``
    may be ``"package.module:function"`` references, imported on first use.
    """

    name: str
    factory: Callable[[ExecutorOptions], Any] | str = LazyCallable()
    description: str = ""
    takes_address: bool = False
    check: Callable[[str | None], None] | str | None = LazyCallable(required=False)
    plugin: str = ""
