"""``adbench run``: run a grid of detectors x datasets x categories x seeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from iadbench.cli.app import app, console
from iadbench.errors import InputError
from iadbench.plugins import get_registry

if TYPE_CHECKING:  # pragma: no cover
    from iadbench.runner.plan import Plan

#: The dataset of a run that names none; the same as iadbench.runner.plan.DEFAULT_DATASET
#: (a test holds them equal), written here so that --help imports no runner.
DEFAULT_DATASET = "factory"


def _dataset_paths(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--dataset-path '{item}' is not NAME=PATH")
        out[name] = str(Path(path).expanduser().resolve())
    return out


def build_plan(
    detectors: list[str],
    datasets: list[str],
    categories: list[str],
    seeds: list[int],
    all_detectors: bool,
    data_root: Path | None,
    dataset_paths: list[str],
    params: list[str],
    threshold: str | None,
    holdout: float | None,
    calibration: str | None = None,
) -> Plan:
    from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, Settings, parse_assignments

    overrides = parse_assignments(params, "--set")
    unknown = set(overrides) - set(detectors) - (set(get_registry().detectors) if all_detectors else set())
    if unknown and not detectors and not all_detectors:  # the default set: --set applies to named detectors only
        raise InputError(f"--set names detector(s) not named with --detector: {', '.join(sorted(unknown))} (add -d NAME)")
    if unknown:
        raise InputError(f"--set names detector(s) not in this run: {', '.join(sorted(unknown))}")
    paths = _dataset_paths(dataset_paths)
    names = datasets or [DEFAULT_DATASET]
    if categories and len(names) > 1:
        raise InputError("--category needs exactly one --dataset")
    settings = Settings()
    if threshold:
        settings.threshold_rule = threshold
    if holdout is not None:
        if not 0 <= holdout < 1:
            raise InputError(f"--holdout {holdout} must be in [0, 1)")
        settings.holdout_fraction = holdout
    if calibration is not None:
        settings.calibration = calibration.strip().lower()
    return Plan(
        detectors=[DetectorEntry(d, overrides.get(d, {})) for d in dict.fromkeys(detectors)],
        datasets=[DatasetEntry(n, list(categories) or None, paths.get(n)) for n in dict.fromkeys(names)],
        seeds=list(dict.fromkeys(seeds)) or [0],
        settings=settings,
        data_root=str(data_root.expanduser().resolve()) if data_root else None,
        all_detectors=all_detectors or False,
    )


def _run_device(requested: str | None, plan: Plan, resumed: Path | None) -> str:
    """The plan's device from --device; on --resume the device its cells were computed
    on (a GPU cell and a CPU cell of one setup have different keys,
    iadbench.runner.plan.device_identity), which --device may only name again."""
    from iadbench.devices import device_kind, parse_device

    device = parse_device(requested, "--device") if requested is not None else None
    if resumed is None:
        return device or plan.device
    from iadbench.results.store import RunStore

    cells = RunStore(resumed).run_info().get("cells") or [{}]
    before = str(cells[0].get("device", "cpu"))  # runs from before devices ran on the CPU
    if device is not None and device != "auto" and device_kind(device) != device_kind(before):
        raise InputError(f"--device {device}: this run's cells were computed on {before}; resume it there, "
                         "or start a new run for the other device")
    return device if device not in (None, "auto") else before


@app.command()
def run(
    detector: list[str] = typer.Option([], "--detector", "-d", help="Detector name (repeatable; none: the default set, leaderboards/default-grid.md; the run says what it left out)."),
    dataset: list[str] = typer.Option([], "--dataset", help=f"Dataset name (repeatable; default {DEFAULT_DATASET})."),
    category: list[str] = typer.Option([], "--category", "-c", help="Category (repeatable; default: all)."),
    seed: list[int] = typer.Option([], "--seed", help="Seed (repeatable; default 0)."),
    all_: bool = typer.Option(False, "--all", help="Every available detector (those tagged opt-in run only when named)."),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="IADBENCH_DATA_ROOT", help="Folder holding mvtec_ad/, visa/, ksdd2/ ..."),
    dataset_path: list[str] = typer.Option([], "--dataset-path", help="Explicit dataset folder, NAME=PATH (repeatable)."),
    set_: list[str] = typer.Option([], "--set", help="Detector parameter, DETECTOR.KEY=VALUE (repeatable)."),
    plan_file: Path | None = typer.Option(None, "--plan", help="TOML plan file (instead of the grid flags)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Where results go (default runs/<time>-<id>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir: skip cells done, rerun failed ones."),
    workers: int | None = typer.Option(None, "--workers", help="Cells in parallel (default: sized for this machine)."),
    threshold: str | None = typer.Option(None, "--threshold", help="Threshold rule on good images' calibration scores: fpr:0.005 (target false-alarm rate on good parts; the default), quantile:0.99, sigma:3 or max."),
    holdout: float | None = typer.Option(None, "--holdout", help="Fraction of good training images held out for the threshold where a detector has no out-of-fold scores (default 0.1)."),
    calibration: str | None = typer.Option(None, "--calibration", help="auto (default): out-of-fold scores of every good training image where the detector has them, else a holdout; holdout: always hold out."),
    cell_timeout: float | None = typer.Option(None, "--cell-timeout", help="Seconds before a cell is killed and recorded as failed."),
    executor: str | None = typer.Option(None, "--executor", help="Where cells run: local (default), ray, or any executor a plugin registered (adbench list executors)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster to join (auto or HOST:PORT); without it --executor ray starts a local instance."),
    runtime: str | None = typer.Option(None, "--runtime", help="How batch-1 latency is measured: eager (default), onnx, openvino, openvino-fp16 or openvino-bf16 (through that runtime where the detector exports and the graph passes its parity gate, else eager; each record's cost.runtime says which). Scores and metrics always come from eager."),
    device: str | None = typer.Option(None, "--device", help="Where cells compute: auto (default: a GPU where torch sees one, else the CPU), cpu, cuda (a cell per GPU) or cuda:N. A GPU this machine lacks is an error before anything runs."),
    training: str | None = typer.Option(None, "--training", help="default (each detector's own training length; CPU-sized for the trained ones) or published (every trained detector at its method's published length: no † in the leaderboard; on the CPU refused with an estimate unless --force)."),
    force: bool = typer.Option(False, "--force", help="Run --training published on the CPU despite the estimate."),
    setting: str | None = typer.Option(None, "--setting", help="per-category (default: a model per category) or unified (one model per dataset fitted on all its categories' good images, evaluated per category, as the multi-class benchmarks; rows marked (unified))."),
    protocol: str | None = typer.Option(None, "--protocol", help="How images reach detectors: default (each whole image resized to the detector's input size) or paper (the PaDiM/PatchCore papers' MVTec AD protocol: resize 256, centre crop 224, masks alike; detectors with an input_size parameter take 224 unless --set gives one)."),
    defects_in_train: str | None = typer.Option(None, "--defects-in-train", help="Mixed supervision: K labelled defective images per category moved into training for detectors that learn from them (supervision mixed); a comma list such as 0,1,5,10,20 runs the sweep as one grid, every row scored on the test set the largest K leaves. Default 0: good images only."),
    keep_models: str | None = typer.Option(None, "--keep-models", help="Fitted model folders kept when the run ends: best (default: the best detector per dataset/category by image AUROC), all, or none. Scores, report and leaderboard never need them."),
) -> None:
    """Run a grid; each cell in its own process, each record appended as it ends."""
    # Imported here, not at the top: --help and the other commands must not pay for them.
    from iadbench.report import leaderboard as leaderboard_mod
    from iadbench.report.summary import summary as _summary
    from iadbench.results.store import RunStore
    from iadbench.runner.plan import Plan, check_executor, check_run_runtime, load_plan_file
    from iadbench.runner.runner import execute, new_run_dir

    registry = get_registry()
    grid_flags = detector or dataset or category or seed or all_ or dataset_path or set_
    if resume:
        if run_dir is None:
            raise InputError("--resume needs --run-dir")
        if grid_flags or plan_file:
            raise InputError("--resume takes its plan from the run folder; drop the grid flags")
        plan = Plan.from_json(RunStore(run_dir).run_info()["plan"])
    elif plan_file is not None:
        if grid_flags:
            raise InputError("use either --plan or the grid flags, not both")
        plan = load_plan_file(plan_file)
        if data_root:
            plan.data_root = str(data_root.resolve())
    else:
        plan = build_plan(detector, dataset, category, seed, all_, data_root, dataset_path, set_, threshold, holdout, calibration)

    # Where cells run never changes a result, so these may also change on --resume.
    if executor is not None:
        plan.executor, plan.address = executor, None
    if address is not None:
        plan.address = address
    if address is not None and executor is None:
        # --address alone means the executor that joins clusters, where exactly one does (ray)
        takers = [n for n, spec in registry.executors.items() if spec.takes_address]
        current = registry.executors.get(plan.executor)
        if len(takers) == 1 and (current is None or not current.takes_address):
            plan.executor = takers[0]
    check_executor(plan.executor, plan.address)
    if device is not None or resume:
        plan.device = _run_device(device, plan, run_dir if resume else None)
    if setting is not None:  # changes what every model is fitted on, so cells: not on --resume
        if resume:
            raise InputError("--resume takes its plan from the run folder; drop --setting")
        from iadbench.runner.plan import check_setting

        plan.setting = check_setting(setting, "--setting")
    if protocol is not None:  # changes what every detector sees, so cells: not on --resume
        if resume:
            raise InputError("--resume takes its plan from the run folder; drop --protocol")
        from iadbench.runner.plan import check_protocol

        plan.protocol = check_protocol(protocol, "--protocol")
    if defects_in_train is not None:  # changes test sets and fits, so cells: not on --resume
        if resume:
            raise InputError("--resume takes its plan from the run folder; drop --defects-in-train")
        from iadbench.model.defects import parse_defect_counts

        plan.defects_in_train = parse_defect_counts(defects_in_train)
    if training is not None:  # changes trained detectors' params, so their cells: not on --resume
        if resume:
            raise InputError("--resume takes its plan from the run folder; drop --training")
        from iadbench.runner.training import check_training

        plan.training = check_training(training)
    if runtime is not None:  # a cost-only choice, like the executor: may change on --resume
        plan.runtime = check_run_runtime(runtime.strip().lower())
    if keep_models is not None:  # disk only, like the runtime: may change on --resume
        from iadbench.results.housekeeping import check_keep_models

        plan.keep_models = check_keep_models(keep_models)
    run_dir = run_dir or new_run_dir()
    outcome = execute(
        plan, registry, run_dir, resume=resume,
        # ray: sized per node by the executor (a cell per 4 CPUs of the smallest node)
        # None: the executor sizes itself (local: a cell per GPU on a GPU run, else default_workers)
        workers=workers, console=console, cell_timeout_s=cell_timeout, force=force,
    )
    _summary(outcome, console)
    from iadbench.cli.runs import print_run_footer

    print_run_footer(plan, registry, outcome, console)
    from iadbench.report.html import write_report
    from iadbench.switches import env_flag

    page = None
    try:  # the pictures are extra: a failure there must not cost the leaderboard
        if env_flag("IADBENCH_HTML_REPORT", default=True):  # ~1 s of matplotlib per run
            page = write_report([outcome.run_dir], outcome.run_dir / "report.html", registry.metrics)
    except Exception as exc:  # noqa: BLE001
        console.print(f"[yellow]warning:[/yellow] HTML report not written: {type(exc).__name__}: {exc}")
    board = leaderboard_mod.write([outcome.run_dir], outcome.run_dir / "leaderboard.md", registry.metrics, report=page)
    console.print(f"results: {outcome.run_dir}/records.jsonl")
    console.print(f"leaderboard: {board}")
    if page is not None:
        console.print(f"report: {page}")
    if outcome.failed:
        raise typer.Exit(1)
