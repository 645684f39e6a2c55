"""A run plan: which detectors (with params), datasets, categories and seeds, and the
evaluation settings. Built from CLI flags or a TOML file, resolved against the
registry, and expanded into cells whose keys hash everything that determines a result.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iadbench.calibration.rules import DEFAULT_RULE
from iadbench.errors import InputError
from iadbench.params import coerce_params
from iadbench.plugins import Registry
from iadbench.results.housekeeping import DEFAULT_KEEP_MODELS, check_keep_models
from iadbench.results.identity import setup_id, stable_key

DEFAULT_DATASET = "factory"
#: What `adbench run` runs when no detector is named (neither --detector nor --all): the
#: detectors that beat chance clearly on the factory within a few minutes on 2 cores
#: (leaderboards/default-grid.md has the measurements). `--all` runs every available one.
DEFAULT_DETECTORS = ("padim", "patchcore", "feature_ae", "pixel_gaussian")
#: How images reach a detector (``--protocol``): the fraction of each resized image kept
#: at its centre. "paper" is the PaDiM and PatchCore papers' MVTec AD protocol: resize to
#: 256, centre crop 224 (masks alike); a detector with an ``input_size`` parameter the
#: plan does not set then takes 224, as in the papers.
PROTOCOLS = {"default": 1.0, "paper": 224 / 256}
PAPER_INPUT_SIZE = 224
#: The tag of detectors that learn from labelled defects (supervision "mixed"): --all
#: runs them only in a --defects-in-train sweep.
MIXED_TAG = "mixed-supervision"
#: What one model is fitted on: each category alone, or every category of a dataset
#: together, evaluated per category (iadbench.model.unified).
SETTINGS = ("per-category", "unified")


@dataclass
class DetectorEntry:
    name: str
    params: dict[str, Any] = field(default_factory=dict)  # overrides only
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass
class DatasetEntry:
    name: str
    categories: list[str] | None = None  # None: all categories
    path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Settings:
    """Evaluation settings; all of them enter every cell's key."""

    # Where the threshold's calibration scores come from: "auto" scores every good training
    # image out of fold where the detector has a shortcut for it (then fit sees them all),
    # else holds ``holdout_fraction`` of them out of fit; "holdout" always holds out.
    calibration: str = "auto"
    holdout_fraction: float = 0.1
    threshold_rule: str = DEFAULT_RULE
    latency_images: int = 10  # batch-1 latency is measured over this many test images
    warmup: int = 1
    predict_batch: int = 16


@dataclass
class Plan:
    detectors: list[DetectorEntry]
    datasets: list[DatasetEntry]
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: Settings = field(default_factory=Settings)
    data_root: str | None = None
    all_detectors: bool = False
    # Where cells compute, not what they compute: neither enters a cell key.
    executor: str = "local"  # "local" | "ray"
    address: str | None = None  # ray: None starts a local instance, "auto" or HOST:PORT joins a cluster
    # How batch-1 latency is measured: "eager", or "onnx" (through onnxruntime where the
    # detector exports; each record says which in cost.runtime). Changes cost numbers
    # only, never scores or metrics (they come from the eager predict), so not in a key.
    runtime: str = "eager"
    # Which fitted model folders stay once the run ends (iadbench.results.housekeeping):
    # disk only, never a result, so not in a key either.
    keep_models: str = DEFAULT_KEEP_MODELS
    # Where cells compute: auto, cpu, cuda or cuda:N (iadbench.devices), resolved at plan
    # time. A GPU cell's key differs from a CPU one's (see ``device_identity``).
    device: str = "auto"
    # "published": trained detectors at their methods' published training length
    # (iadbench.runner.training); it changes their params, and so their keys.
    training: str = "default"
    # Labelled defective images per category moved into training (mixed supervision,
    # iadbench.model.defects): a sweep. Each K > 0 is its own cell for a detector that
    # learns from labels; every cell of the sweep is scored on the test set its largest K
    # leaves, so all rows compare. [0]: the unsupervised protocol, keys as before.
    defects_in_train: list[int] = field(default_factory=lambda: [0])
    # How images reach detectors (PROTOCOLS): "paper" enters every key, "default" none
    protocol: str = "default"
    # SETTINGS: "unified" fits one model per dataset (its key says so); "per-category" none
    setting: str = "per-category"

    @property
    def default_grid(self) -> bool:
        """No detector named and not --all: the run is DEFAULT_DETECTORS."""
        return not self.detectors and not self.all_detectors

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(
            detectors=[DetectorEntry(**d) for d in data["detectors"]],
            datasets=[DatasetEntry(**d) for d in data["datasets"]],
            seeds=list(data.get("seeds", [0])),
            settings=Settings(**data.get("settings", {})),
            data_root=data.get("data_root"),
            all_detectors=bool(data.get("all_detectors", False)),
            executor=data.get("executor", "local"),
            address=data.get("address"),
            runtime=data.get("runtime", "eager"),
            # runs from before --keep-models kept every model
            keep_models=data.get("keep_models", "all"),
            # runs from before --device ran on the CPU
            device=data.get("device", "cpu"),
            training=data.get("training", "default"),
            defects_in_train=list(data.get("defects_in_train", [0])),
            protocol=data.get("protocol", "default"),
            setting=data.get("setting", "per-category"),
        )


@dataclass
class Cell:
    """One unit of work: a detector with resolved params on one category and seed."""

    key: str
    detector: str
    label: str
    detector_version: str
    params: dict[str, Any]
    dataset: str
    dataset_version: str
    dataset_path: str | None
    dataset_params: dict[str, Any]
    data_root: str | None
    category: str
    seed: int
    settings: dict[str, Any]
    runtime: str = "eager"  # see Plan.runtime: not part of the key
    device: str = "cpu"  # cpu, cuda or cuda:N, resolved; its kind enters the key on a GPU (device_identity)
    # Mixed supervision (iadbench.model.defects): K labelled defects this cell's detector
    # trains on, of the ``defects_reserve`` the sweep sets aside; both 0 for the
    # unsupervised protocol. In the key where the reserve is not 0 (``defects_identity``).
    defects_in_train: int = 0
    defects_reserve: int = 0
    defects_learns: bool = False  # the detector learns from them (its supervision is "mixed")
    protocol: str = "default"  # PROTOCOLS; in the key where not "default"
    # The unified setting: the categories one model is fitted on together and evaluated on,
    # one record each (``record_keys``); None: the cell's one category
    categories: list[str] | None = None

    @property
    def row_label(self) -> str:
        """The label of this cell's rows in tables (iadbench.results.identity.row_label)."""
        from iadbench.results.identity import row_label

        return row_label(self.label, self.defects_in_train if self.defects_learns else None, bool(self.categories))

    @property
    def record_keys(self) -> list[str]:
        """The keys of the records this cell writes: its own, or one per category."""
        if not self.categories:
            return [self.key]
        from iadbench.model.unified import record_key

        return [record_key(self.key, c) for c in self.categories]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        return cls(**data)

    @property
    def title(self) -> str:
        k = f" / K={self.defects_in_train}" if self.defects_learns else ""
        return f"{self.label} / {self.dataset}:{self.category} / seed {self.seed}{k}"


def parse_value(text: str) -> Any:
    """A CLI value: JSON where it parses (numbers, lists, true/false), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str], what: str) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` items -> {NAME: {KEY: VALUE}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.rpartition(".")
        if not sep or not dot or not name or not key:
            raise InputError(f"{what} '{item}' is not NAME.KEY=VALUE")
        out.setdefault(name, {})[key] = parse_value(value)
    return out


def load_plan_file(path: Path) -> Plan:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("plan file not found", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"invalid TOML: {exc}", path) from exc
    try:
        run = dict(data.get("run", {}))
        settings = Settings(**run.pop("settings", {}), **{k: run.pop(k) for k in list(run) if k in Settings.__dataclass_fields__})
        detectors = [DetectorEntry(**d) for d in data.get("detector", [])]
        datasets = [DatasetEntry(**d) for d in data.get("dataset", [])]
        plan = Plan(
            detectors=detectors,
            datasets=datasets or [DatasetEntry(DEFAULT_DATASET)],
            seeds=list(run.pop("seeds", [0])),
            settings=settings,
            data_root=run.pop("data_root", None),
            all_detectors=bool(run.pop("all", False)),
            executor=run.pop("executor", "local"),
            address=run.pop("address", None),
            runtime=run.pop("runtime", "eager"),
            keep_models=run.pop("keep_models", DEFAULT_KEEP_MODELS),
            device=run.pop("device", "auto"),
            training=run.pop("training", "default"),
            defects_in_train=run.pop("defects_in_train", [0]),
            protocol=run.pop("protocol", "default"),
            setting=run.pop("setting", "per-category"),
        )
        if run:
            raise TypeError(f"unknown [run] keys: {', '.join(sorted(run))}")
    except TypeError as exc:
        raise InputError(f"invalid plan: {exc}", path) from exc
    check_executor(plan.executor, plan.address, path)
    check_run_runtime(plan.runtime, path)
    from iadbench.devices import parse_device
    from iadbench.runner.training import check_training

    try:
        plan.device = parse_device(str(plan.device), "device")
    except InputError as exc:
        raise InputError(str(exc), path) from None
    plan.training = check_training(plan.training, path)
    from iadbench.model.defects import check_defect_counts

    try:
        plan.defects_in_train = check_defect_counts(plan.defects_in_train)
        plan.protocol = check_protocol(plan.protocol)
        plan.setting = check_setting(plan.setting)
    except InputError as exc:
        raise InputError(str(exc), path) from None
    try:
        plan.keep_models = check_keep_models(str(plan.keep_models))
    except InputError as exc:
        raise InputError(str(exc).replace("--keep-models", "keep_models"), path) from None
    if plan.data_root and not os.path.isabs(plan.data_root):
        plan.data_root = str((path.parent / plan.data_root).resolve())
    for d in plan.datasets:
        if d.path and not os.path.isabs(d.path):
            d.path = str((path.parent / d.path).resolve())
    return plan


def check_executor(executor: str, address: str | None, where: Path | None = None, *,
                   registry: Registry | None = None, ready: bool = False) -> None:
    """The executor is one the plugins registered (``registry``: the process's one by
    default) and takes ``address`` if one is given; with ``ready``, its own check runs too
    (e.g. Ray installed), for the moment before a run starts."""
    from iadbench.plugins import get_registry

    registry = registry or get_registry()
    if executor not in registry.executors:
        known = ", ".join(sorted(registry.executors)) or "none"
        raise InputError(f"unknown executor '{executor}' (known: {known})", where)
    spec = registry.executors[executor]
    if address is not None and not spec.takes_address:
        takers = ", ".join(sorted(n for n, e in registry.executors.items() if e.takes_address)) or "none"
        raise InputError(f"an address ('{address}') needs an executor that joins a cluster ({takers}), not '{executor}'", where)
    if ready and spec.check is not None:
        spec.check(address)


#: openvino-int8 needs calibration images a cell does not set aside: not a run runtime.
RUN_RUNTIMES = ("eager", "onnx", "openvino", "openvino-fp16", "openvino-bf16")


def check_run_runtime(runtime: str, where: Path | None = None) -> str:
    """A run's latency runtime (Plan.runtime): eager, onnx or an OpenVINO one but INT8."""
    if runtime not in RUN_RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r} (known: {', '.join(RUN_RUNTIMES)})", where)
    if runtime != "eager":  # every graph starts as a checked ONNX graph
        from iadbench.deploy.runtime import onnxruntime_available

        if not onnxruntime_available():
            raise InputError(f"runtime '{runtime}' needs onnxruntime (pip install 'iadbench[deploy]')", where)
    if runtime.startswith("openvino"):
        from iadbench.deploy.openvino import openvino_available

        if not openvino_available():
            raise InputError(f"runtime '{runtime}' needs openvino (pip install 'iadbench[openvino]')", where)
    return runtime


def check_protocol(protocol: str, where: str = "protocol") -> str:
    """A known protocol name (PROTOCOLS)."""
    name = str(protocol).strip().lower()
    if name not in PROTOCOLS:
        raise InputError(f"{where} {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return name


def check_setting(setting: str, where: str = "setting") -> str:
    """A known setting name (SETTINGS)."""
    name = str(setting).strip().lower()
    if name not in SETTINGS:
        raise InputError(f"{where} {setting!r} is not one of {', '.join(SETTINGS)}")
    return name


def protocol_params(spec, given: dict[str, Any], protocol: str) -> dict[str, Any]:
    """The params a protocol sets: under "paper", ``input_size`` 224 for a detector that
    has that parameter and was not given one."""
    if protocol == "paper" and "input_size" in spec.params and "input_size" not in given:
        return {"input_size": PAPER_INPUT_SIZE}
    return {}


def device_identity(device: str) -> dict[str, str]:
    """What a cell's key holds of its device: nothing on the CPU (so every key from
    before devices stands), ``{"device": "cuda"}`` on a GPU.

    In the key because a GPU cell computes different numbers: other kernels and
    reduction orders change a trained detector's scores in their last bits, and
    ``precision="auto"`` trains in bfloat16 on a GPU where a CPU without bfloat16
    units trains in float32. A run resumed on the other kind of device then runs its
    cells afresh instead of mixing the two, and a CPU and a GPU run of one grid sit
    side by side in a leaderboard. The GPU's index stays out: which GPU of a machine
    a cell got is the executor's choice, not the setup's."""
    from iadbench.devices import device_kind

    kind = device_kind(device)
    return {} if kind == "cpu" else {"device": kind}


def defects_identity(reserve: int, k: int, learns: bool) -> dict[str, Any]:
    """What a cell's key holds of mixed supervision: nothing in the unsupervised protocol
    (reserve 0: every key from before stands); else the reserve, which fixes the test
    set, and K for a detector that learns from labels. An unsupervised detector's cell
    does not depend on K (it never sees the labels, and the test set is the reserve's),
    so a sweep runs it once, not once per K."""
    if reserve == 0:
        return {}
    return {"defects": {"reserve": reserve, **({"k": k} if learns else {})}}


def default_entries(registry: Registry) -> list[DetectorEntry]:
    """DEFAULT_DETECTORS that are installed and available here (a default that is not
    is skipped, not an error: `left_out` names it)."""
    specs = registry.detectors
    return [DetectorEntry(n) for n in DEFAULT_DETECTORS if n in specs and specs[n].available]


def left_out(plan: Plan, registry: Registry, cells: list[Cell]) -> list[tuple[str, str]]:
    """(name, why) of every available detector a default or --all run did not run; empty
    for a run that named its detectors (it chose them)."""
    if plan.detectors:
        return []
    ran = {c.detector for c in cells}
    out = []
    for name, spec in sorted(registry.detectors.items()):
        if name in ran or not spec.available:
            continue
        if "opt-in" in spec.tags:
            why = "opt-in (slow): -d " + name
        elif MIXED_TAG in spec.tags and not max(plan.defects_in_train or [0]):
            why = "learns from labelled defects: add --defects-in-train K"
        else:
            why = "not in the default set"
        out.append((name, why))
    return out


def _check_params(name: str, spec, params: dict[str, Any]):
    """Build the detector once, unfitted, so a value its constructor refuses is a plan
    error before any cell starts (constructors are cheap: weights load in fit); returns it."""
    try:
        return spec.factory(**params)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(f"detector '{name}' refuses its parameters: {exc}") from None


def _identity(spec, params: dict[str, Any]) -> str:
    return setup_id(spec.name, spec.version, params)


def expand(plan: Plan, registry: Registry, categories_of=None) -> list[Cell]:
    """Resolve names and params against the registry and list every cell.

    Everything a user could get wrong is checked here, before any cell starts:
    names, parameters (keys and types against the factory's signature, then by
    building each detector once), categories, the threshold rule. ``categories_of(dataset_entry) -> list[str]`` lists a dataset's categories;
    the runner passes one that opens the dataset (tests may pass a stub).

    Two entries that would compute the same results (same detector, version and
    resolved params) are refused, whatever their labels: a label is display only and
    stays out of the cell key, so such entries would share keys and cell folders.
    """
    from iadbench.runner.training import check_training, published_params

    check_training(plan.training)
    detectors = list(plan.detectors) if not plan.default_grid else default_entries(registry)
    if not plan.seeds:
        raise InputError("no seed chosen")
    labels = [d.display for d in detectors]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise InputError(f"detector listed twice without distinct labels: {', '.join(sorted(dupes))}")

    resolved = []
    seen: dict[str, str] = {}  # identity -> label of the entry that has it
    for entry in detectors:
        spec = registry.detector(entry.name)
        if not spec.available and not entry.params:
            # With params (say a local weights file) the user may have supplied what
            # was missing; the detector's constructor checks them just below.
            raise InputError(f"detector '{entry.name}' is unavailable: {spec.unavailable_reason}")
        # Keys and types against the declared params (the factory's signature):
        # an int for a float param becomes a float, so 1 and 1.0 are one setup.
        params = {**spec.params, **coerce_params(spec, entry.params)}
        if plan.training == "published":
            params.update(published_params(spec, entry.params))
        params.update(coerce_params(spec, protocol_params(spec, entry.params, plan.protocol)))
        identity = _identity(spec, params)
        if identity in seen:
            raise InputError(
                f"detector entries '{seen[identity]}' and '{entry.display}' are the same detector with the "
                f"same parameters, so they would compute the same cells: drop one or change a parameter"
            )
        seen[identity] = entry.display
        built = _check_params(entry.name, spec, params)
        resolved.append((entry, spec, params, _learns(built)))
    if plan.all_detectors:
        # --all adds each available detector at its defaults, unless an entry above
        # already runs it with exactly those parameters (under any label).
        taken = set(labels)
        for name, spec in sorted(registry.detectors.items()):
            params = {**spec.params, **(published_params(spec, {}) if plan.training == "published" else {})}
            params.update(coerce_params(spec, protocol_params(spec, {}, plan.protocol)))
            if not spec.available or name in taken or _identity(spec, params) in seen:
                continue
            if "opt-in" in spec.tags:  # too slow for the default grid: runs when named
                continue
            if MIXED_TAG in spec.tags and not max(plan.defects_in_train or [0]):
                continue  # learns from labelled defects: without any it repeats its unsupervised part
            seen[_identity(spec, params)] = name
            # built only for a sweep: --all would otherwise import every detector's module here
            learns = bool(max(plan.defects_in_train or [0])) and _learns(spec.factory(**params))
            resolved.append((DetectorEntry(name), spec, params, learns))
    if not resolved:
        raise InputError("no available detector to run (see `adbench list detectors`)")

    from iadbench.calibration.rules import parse_rule
    from iadbench.devices import resolve_device
    from iadbench.model.fit import CALIBRATIONS

    # auto -> a GPU where torch sees one; a GPU this machine lacks is an error here
    device = resolve_device(plan.device, "device")
    parse_rule(plan.settings.threshold_rule)  # a misspelt rule fails here, not in every cell
    if plan.settings.calibration not in CALIBRATIONS:
        raise InputError(f"calibration {plan.settings.calibration!r} is not one of {', '.join(CALIBRATIONS)}")
    from iadbench.model.defects import check_defect_counts

    counts = check_defect_counts(plan.defects_in_train)
    reserve = max(counts)
    protocol = check_protocol(plan.protocol)
    seen_protocol = {} if protocol == "default" else {"protocol": protocol}
    unified = check_setting(plan.setting) == "unified"
    if unified and reserve:
        raise InputError("--setting unified with --defects-in-train is not supported: labelled defects are "
                         "drawn per category, a unified model fits on all of them")
    settings = asdict(plan.settings)
    cells: list[Cell] = []
    for ds in plan.datasets:
        ds_spec = registry.dataset(ds.name)
        unknown = set(ds.params) - set(ds_spec.params)
        if unknown:
            known = ", ".join(sorted(ds_spec.params)) or "none"
            raise InputError(f"unknown parameter(s) {', '.join(sorted(unknown))} for dataset '{ds.name}' (known: {known})")
        # Defaults resolved into the key, as for detectors: a changed default is a new cell.
        ds_params = {**ds_spec.params, **ds.params}
        known = categories_of(ds) if categories_of else None
        categories = ds.categories or known or []
        if not categories:
            raise InputError(f"dataset '{ds.name}' has no categories")
        if known is not None and ds.categories:
            missing = [c for c in ds.categories if c not in known]
            if missing:
                raise InputError(
                    f"unknown category {', '.join(repr(c) for c in missing)} for dataset '{ds.name}' "
                    f"(known: {', '.join(known)})"
                )
        if unified:
            from iadbench.model.unified import UNIFIED_CATEGORY

            if len(categories) < 2:
                raise InputError(f"--setting unified needs two or more categories of '{ds.name}' "
                                 f"(got {', '.join(categories)})")
            blocks = [(UNIFIED_CATEGORY, list(categories))]
        else:
            blocks = [(category, None) for category in categories]
        for category, together in blocks:
            for seed in plan.seeds:
                for entry, spec, params, learns in resolved:
                    identity = {
                        "detector": spec.name,
                        "detector_version": spec.version,
                        "params": params,
                        "dataset": ds.name,
                        "dataset_version": ds_spec.version,
                        "dataset_path": ds.path,
                        "dataset_params": ds_params,
                        "data_root": plan.data_root if ds.path is None else None,
                        "category": category,
                        "seed": seed,
                        "settings": settings,
                    }
                    if together:
                        identity["categories"] = together  # in the key: another set is another model
                    for k in counts if learns else [0]:
                        key = stable_key({**identity, **device_identity(device), **defects_identity(reserve, k, learns),
                                          **seen_protocol})
                        cells.append(Cell(key=key, label=entry.display, runtime=plan.runtime, device=device,
                                          protocol=protocol, defects_in_train=k, defects_reserve=reserve,
                                          defects_learns=learns and reserve > 0, **identity))
    return cells


def _learns(detector) -> bool:
    """The detector learns from labelled defects (``supervision`` "mixed")."""
    return getattr(detector, "supervision", "unsupervised") == "mixed"
