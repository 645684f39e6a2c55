"""The cell record: one line of ``records.jsonl`` per finished cell, written and read
through this one definition.

A record carries ``schema_version``. Records written before the schema existed
(version 0: no version field) are read through ``migrate``, which states every
difference; a record from a newer iadbench than this one is refused with a one-line
error rather than half-read. ``json_schema()`` is the published JSON Schema
(``adbench schema record``; docs/record.schema.json).

Groups that plugins extend stay open: ``metrics`` (any registered metric), ``cost``
(fields may be added by executors and runtimes), ``split_notes`` (a dataset's facts),
``params`` and ``settings``. The rest is closed: a misspelt field is an error at write
time, not a silently empty column at read time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iadbench.errors import InputError

#: Version 1: the first typed schema. Version 2: where the cell computed (``device``,
#: ``device_name``, ``cost.peak_gpu_mb``). Version 3: labelled defects in training
#: (``supervision``), the image ``protocol`` and the ``setting``. Bump it with a migration step below.
SCHEMA_VERSION = 3

Number = float | None  # JSON has no NaN: a metric that could not be computed is null with a note


class NewerSchemaError(InputError):
    """A record written by a newer iadbench: refused whole rather than half-read."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Proportion(_Closed):
    """k of n with its Clopper-Pearson interval (value and ends null when n is 0)."""

    value: Number = None
    low: Number = None
    high: Number = None
    k: int = 0
    n: int = 0


class ThresholdEstimate(_Open):
    """A threshold fixed on calibration scores (``iadbench.calibration.tail.Estimate``)."""

    value: Number = None
    low: Number = None
    high: Number = None
    method: str | None = None
    n: int | None = None
    tail_n: int | None = None
    note: str | None = None


class Calibration(_Closed):
    """How the good training images got the scores the threshold was fixed on."""

    method: str  # the detector's out-of-fold shortcut, "5-fold refits" or "holdout"
    images: int
    estimate: ThresholdEstimate | None = None


class Threshold(_Closed):
    rule: str | None = None
    value: Number = None
    holdout_images: int = 0
    pixel_value: Number = None
    display_range: list[float] | None = None
    calibration: Calibration | None = None
    note: str | None = None


class BudgetVerdict(_Closed):
    """Recall and false alarms at one false-alarm budget's threshold, or why none."""

    threshold: ThresholdEstimate | None = None
    fpr: Proportion | None = None
    recall: Proportion | None = None
    error: str | None = None


class Verdicts(_Closed):
    """What the run's threshold did on the test set (``iadbench.calibration.verdicts``)."""

    target_fpr: Number = None
    confidence: float
    fpr: Proportion
    recall: Proportion
    budgets: dict[str, BudgetVerdict] = Field(default_factory=dict)


class Counts(_Closed):
    train: int
    holdout: int
    test: int
    test_anomalous: int
    test_masks: bool


class Intervals(_Open):
    """Bootstrap intervals: the method's description, then ``metric name: [low, high]``
    (null where the metric's interval is undefined) for each metric that declares one."""

    level: float | None = None
    method: str | None = None
    resamples: int | None = None
    seed: int | None = None
    error: str | None = None  # the intervals failed; the cell's metrics stand

    def bounds(self) -> dict[str, list[float]]:
        """``metric name -> [low, high]`` for every metric with an interval."""
        extra = self.model_extra or {}
        return {k: v for k, v in extra.items() if isinstance(v, list) and len(v) == 2}


class Cost(_Open):
    """What the cell cost; executors and runtimes may add fields."""

    fit_s: Number = None
    fit_feature_cache_hits: int | None = None
    predict_s: Number = None
    latency_ms_p50: Number = None
    latency_ms_p95: Number = None
    backbone_latency_ms_p50: Number = None
    throughput_ips: Number = None
    throughput_batch: int | None = None
    peak_rss_mb: Number = None
    peak_gpu_mb: Number = None  # torch's peak GPU allocation; null on the CPU
    artifact_mb: Number = None
    threads: int | None = None
    runtime: str | None = None
    runtime_detail: str | None = None
    runtime_note: str | None = None


class Training(_Closed):
    """The training length used beside the one the method was published with."""

    unit: str
    used: Any = None
    published: Any = None
    source: str | None = None
    steps: int | None = None


class Supervision(_Closed):
    """Labelled defects a run moved into training (``--defects-in-train``;
    iadbench.model.defects): absent (null) in the unsupervised protocol."""

    k: int  # labelled defective images this cell's detector was given
    reserve: int  # the sweep's largest K: defects set aside for every cell of the category
    # moved out of the test split, or the dataset's own training defects (null: the cell failed first)
    source: Literal["test", "dataset"] | None = None
    learns: bool | None = None  # the detector learns from them (supervision "mixed"); else it never saw them
    images: list[str] = Field(default_factory=list)  # the K images
    masks: int = 0  # how many of them have a mask
    test_removed: list[str] = Field(default_factory=list)  # defective test images set aside (never scored)


class Retried(_Closed):
    """A cell an executor ran more than once (its worker died): each attempt's error."""

    attempts: int
    errors: list[str] = Field(default_factory=list)


#: Fields present only when what they tell of happened: a traceback, a gallery that could
#: not be drawn, a cell that ran on a remote worker or was retried there.
EVENT_FIELDS = ("traceback", "gallery_error", "worker_host", "retried")


class CellRecord(_Closed):
    """One finished cell: what ran (identity), how it went, and what it measured."""

    schema_version: int = SCHEMA_VERSION
    key: str
    run_id: str | None = None
    detector: str  # the plan's label (display)
    detector_name: str
    detector_version: str | None = None
    dataset: str
    dataset_version: str | None = None
    category: str
    seed: int
    params: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)

    status: Literal["ok", "failed"]
    error: str | None = None
    traceback: str | None = None
    started: float | None = None
    finished: float | None = None

    metrics: dict[str, Number] = Field(default_factory=dict)
    metric_notes: dict[str, str] = Field(default_factory=dict)
    intervals: Intervals | None = None
    gallery_error: str | None = None
    threshold: Threshold | None = None
    verdicts: Verdicts | None = None
    counts: Counts | None = None
    cost: Cost = Field(default_factory=Cost)
    input_size: list[int] | None = None
    # Where it computed: "cpu" or "cuda:N" (N the physical GPU) and the CPU's or GPU's
    # model name; null for a cell that failed before it knew.
    device: str | None = None
    device_name: str | None = None
    training: Training | None = None
    supervision: Supervision | None = None
    # How images reached the detector (iadbench.runner.plan.PROTOCOLS): "default" (whole
    # image resized) or "paper" (resize, centre crop 224/256); null before schema 3
    protocol: str | None = None
    # "per-category" (a model per category) or "unified" (one model fitted on all the
    # dataset's categories, evaluated per category; ``cell_key`` is that model's cell,
    # whose folder holds it, with each category's files under categories/<category>/)
    setting: str | None = None
    cell_key: str | None = None
    split_notes: dict[str, Any] = Field(default_factory=dict)
    artifact: str | None = None
    # Where it ran, from executors that run elsewhere: the worker's host, the retries of a
    # cell whose worker died, and anything else an executor plugin wants kept.
    worker_host: str | None = None
    retried: Retried | None = None
    executor_info: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """The JSON-able dict written to ``records.jsonl``: every field, null where it has
        no value, except the ones that tell of something that happened (EVENT_FIELDS),
        which appear only when it did."""
        data = self.model_dump(mode="json")
        for name in EVENT_FIELDS:
            if data.get(name) is None:
                data.pop(name, None)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], run_settings: dict[str, Any] | None = None) -> CellRecord:
        """A record as read from disk, migrated to this schema (``run_settings``: the run's
        plan settings, which version 0 records did not copy into themselves)."""
        if not isinstance(data, dict):
            raise InputError(f"a cell record must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"cell record {data.get('key', '?')} has schema version {version!r}; this iadbench reads "
                f"up to {SCHEMA_VERSION} (upgrade iadbench to read it)"
            )
        data = migrate(data, version, run_settings)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(f"cell record {data.get('key', '?')}: {where}: {first['msg']}") from None


def migrate(data: dict[str, Any], version: int, run_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bring a record of ``version`` to SCHEMA_VERSION, one step at a time."""
    data = dict(data)
    if version < 1:
        data = _v0_to_v1(data, run_settings)
    if version < 2:
        data = _v1_to_v2(data)
    if version < 3:
        data["schema_version"] = 3  # version 3 only added ``supervision``: null, the unsupervised protocol
    return data


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no device fields: every cell up to then computed on the CPU (no
    detector could use a GPU), whose model name is in the run's environment, not here.
    A failed cell keeps a null device, as a failed version-2 cell may."""
    data["schema_version"] = 2
    if data.get("status") == "ok":
        data.setdefault("device", "cpu")
    return data


def _v0_to_v1(data: dict[str, Any], run_settings: dict[str, Any] | None) -> dict[str, Any]:
    """Version 0 (every record written before the schema existed, up to iadbench 0.1's
    verdicts): untyped, with optional fields absent rather than null.

    - ``detector_name`` was missing in the earliest records: the label was the name.
    - ``settings`` were not copied into records at first: the run's plan settings.
    - ``metrics``/``cost`` of failed cells could be absent: empty.
    - a record that failed before the executor knew its result may lack ``status``
      details; ``error`` stays as written.
    """
    data["schema_version"] = 1
    data.setdefault("detector_name", data.get("detector"))
    if not data.get("settings"):
        data["settings"] = dict(run_settings or {})
    for group in ("metrics", "cost", "metric_notes", "split_notes", "params"):
        if data.get(group) is None:
            data[group] = {}
    if data.get("detector_version") is not None:
        data["detector_version"] = str(data["detector_version"])
    if data.get("dataset_version") is not None:
        data["dataset_version"] = str(data["dataset_version"])
    return data


def build_record(identity: dict[str, Any], result: dict[str, Any]) -> CellRecord:
    """A record from the cell's identity (runner) and its result (the cell process, or
    the executor's account of its failure). Raises InputError where the result does not
    fit the schema, naming the field."""
    try:
        return CellRecord.model_validate({"schema_version": SCHEMA_VERSION, **identity, **result})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"cell {identity.get('key', '?')} result does not fit the record schema: {where}: {first['msg']}") from None


def json_schema() -> dict[str, Any]:
    """The record's JSON Schema (draft 2020-12, as pydantic writes it)."""
    schema = CellRecord.model_json_schema()
    schema["$id"] = f"https://iadbench.dev/schemas/cell-record-v{SCHEMA_VERSION}.json"
    schema["title"] = "iadbench cell record"
    return schema


if __name__ == "__main__":  # python -m iadbench.results.record > docs/record.schema.json
    import json
    import sys

    sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
