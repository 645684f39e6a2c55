"""Devices on a machine without a GPU: device strings, the plan-time refusal of a GPU
this machine lacks, the cell key's device rule, the local executor's GPU hand-out
(with a faked GPU count), device fields in records, and model folders loaded onto
another device. The GPU paths themselves need a GPU; these pin the plumbing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import iadbench.devices as devices
from iadbench.devices import describe_device, device_kind, parse_device, resolve_device, torch_device
from iadbench.errors import InputError
from iadbench.runner.plan import Cell, DatasetEntry, DetectorEntry, Plan, device_identity, expand, load_plan_file
from testkit import cli

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize(("text", "normal"), [("auto", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"), ("CUDA:1", "cuda:1")])
def test_device_strings_are_normalised(text, normal):
    assert parse_device(text) == normal


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:0", "auto:1", "", "cuda:-1", "mps"])
def test_a_bad_device_string_is_one_line_naming_it(text):
    with pytest.raises(InputError) as err:
        parse_device(text, "--device")
    message = str(err.value)
    assert repr(text) in message and "auto, cpu, cuda or cuda:N" in message and "\n" not in message


def test_devices_resolve_against_the_gpu_count():
    assert resolve_device("auto", count=0) == "cpu" and resolve_device("auto", count=2) == "cuda"
    assert resolve_device("cpu", count=0) == "cpu" and resolve_device("cuda:1", count=2) == "cuda:1"
    with pytest.raises(InputError, match=r"^--device cuda: this machine has no GPU"):
        resolve_device("cuda", count=0)
    with pytest.raises(InputError, match=r"^--device cuda:2: this machine has 2 GPU\(s\), cuda:0 to cuda:1$"):
        resolve_device("cuda:2", count=2)
    assert torch_device("cuda") == "cuda:0" and torch_device("cuda:3") == "cuda:3" and torch_device("cpu") == "cpu"
    with pytest.raises(InputError, match="resolved first"):
        torch_device("auto")
    assert device_kind("cuda:3") == "cuda" and device_kind("cpu") == "cpu"


def test_a_record_names_the_physical_gpu_and_the_cpu_by_model(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert devices.visible_gpu_label("cuda") == "cuda:3"  # the executor left GPU 3 visible as cuda:0
    assert devices.visible_gpu_label("cuda:1") == "cuda:1"
    cpu_model = Path("/proc/cpuinfo").read_text().split("model name", 1)[1].split(":", 1)[1].splitlines()[0].strip()
    assert describe_device("cpu") == {"device": "cpu", "device_name": cpu_model}
    assert devices.peak_gpu_mb("cpu") is None
    devices.reset_peak_gpu_memory("cpu")  # nothing to reset, and no torch.cuda call


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_run_on_a_gpu_this_machine_lacks_exits_2_in_one_line_before_the_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert cli("run", "-d", "pixel_gaussian", "--category", "bottle", "--device", "cuda", "--run-dir", str(run_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert "cuda" in err and "no GPU" in err and len(err.splitlines()) == 1
    assert not run_dir.exists()
    assert cli("run", "-d", "pixel_gaussian", "--device", "tpu", "--run-dir", str(run_dir)) == 2
    assert "'tpu' is not a device" in capsys.readouterr().err and not run_dir.exists()


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_fit_and_predict_on_a_gpu_this_machine_lacks_exit_2_in_one_line(tmp_path, capsys):
    out = tmp_path / "model"
    assert cli("fit", "pixel_gaussian", "-c", "bottle", "--out", str(out), "--device", "cuda:1") == 2
    err = capsys.readouterr().err.strip()
    assert "cuda:1" in err and "no GPU" in err and len(err.splitlines()) == 1 and not out.exists()
    assert cli("predict", str(tmp_path), str(tmp_path), "--device", "cuda") == 2  # before the folder is read
    err = capsys.readouterr().err.strip()
    assert "device cuda: this machine has no GPU" in err and len(err.splitlines()) == 1


def _plan(device: str) -> Plan:
    return Plan(detectors=[DetectorEntry("pixel_gaussian", {"input_size": 32})], datasets=[DatasetEntry("factory", ["bottle"])],
                seeds=[0, 1], device=device)


def test_a_gpu_cell_has_its_own_key_and_a_cpu_cell_keeps_its_old_one(monkeypatch):
    from iadbench.plugins import get_registry
    from iadbench.results.identity import stable_key

    monkeypatch.setattr(devices, "gpu_count", lambda: 2)
    registry = get_registry()
    cpu, auto, any_gpu, gpu1 = (expand(_plan(d), registry) for d in ("cpu", "auto", "cuda", "cuda:1"))
    assert [c.device for c in cpu] == ["cpu", "cpu"] and {c.device for c in auto} == {"cuda"}
    assert {c.device for c in gpu1} == {"cuda:1"}
    # the GPU's index is the executor's choice, not the setup's
    assert [c.key for c in any_gpu] == [c.key for c in gpu1] == [c.key for c in auto]
    assert not {c.key for c in cpu} & {c.key for c in any_gpu}
    # a CPU key is what it was before devices: the identity alone, nothing added (nor by
    # the fields of later features at their defaults: labelled defects, protocol, setting)
    later = ("defects_in_train", "defects_reserve", "defects_learns", "protocol", "categories")
    for cell in cpu:
        identity = {k: v for k, v in cell.to_json().items() if k not in ("key", "label", "runtime", "device", *later)}
        assert cell.key == stable_key(identity)
    assert device_identity("cpu") == {} and device_identity("cuda:1") == {"device": "cuda"}


def test_a_plan_file_takes_a_device_and_refuses_a_bad_one(tmp_path, monkeypatch):
    from iadbench.plugins import get_registry

    path = tmp_path / "plan.toml"
    path.write_text('[run]\ndevice = "CUDA"\n\n[[detector]]\nname = "pixel_gaussian"\n')
    plan = load_plan_file(path)
    assert plan.device == "cuda"
    monkeypatch.setattr(devices, "gpu_count", lambda: 0)
    with pytest.raises(InputError, match="no GPU"):
        expand(plan, get_registry(), lambda entry: ["bottle"])
    path.write_text('[run]\ndevice = "gpu0"\n')
    with pytest.raises(InputError) as err:
        load_plan_file(path)
    assert str(path) in str(err.value) and "'gpu0' is not a device" in str(err.value)
    assert Plan.from_json({**Plan([], []).to_json(), "device": "cuda:1"}).device == "cuda:1"
    old = Plan([], []).to_json()
    del old["device"]
    assert Plan.from_json(old).device == "cpu"  # runs from before devices ran on the CPU


def _cell(device: str, key: str) -> Cell:
    return Cell(key=key, detector="d", label="d", detector_version="1", params={}, dataset="x", dataset_version="1",
                dataset_path=None, dataset_params={}, data_root=None, category="c", seed=0, settings={}, device=device)


def test_the_local_executor_gives_each_running_gpu_cell_its_own_gpu(monkeypatch):
    from iadbench.runner import executor as executor_mod
    from iadbench.runner.builtin import _local
    from iadbench.runner.runner import _gpus_to_share
    from iadbench.types import ExecutorOptions

    monkeypatch.setattr(executor_mod, "_fresh_forkserver", lambda preload: None)  # no process is started here
    monkeypatch.setattr(devices, "gpu_count", lambda: 2)
    assert _gpus_to_share([_cell("cpu", "a")]) == [] and _gpus_to_share([_cell("cuda:1", "a")]) == []
    assert _gpus_to_share([_cell("cpu", "a"), _cell("cuda", "b")]) == [0, 1]
    # unsized: a cell per GPU; asked for more workers than GPUs: still a cell per GPU
    assert _local(ExecutorOptions(workers=None, gpus=[0, 1])).workers == 2
    ex = executor_mod.LocalProcessExecutor(workers=8, gpus=[0, 1])
    assert ex.workers == 2
    assert ex._take_gpu(_cell("cpu", "a")) is None and ex._take_gpu(_cell("cuda:1", "b")) is None
    first, second = ex._take_gpu(_cell("cuda", "c")), ex._take_gpu(_cell("cuda", "d"))
    assert {first, second} == {0, 1}
    got = []
    waiter = threading.Thread(target=lambda: got.append(ex._take_gpu(_cell("cuda", "e"))))
    waiter.start()
    waiter.join(0.2)
    assert got == []  # both GPUs busy: the third cell waits
    ex._free_gpus.put(second)
    waiter.join(5)
    assert got == [second]
    ex._pool.shutdown()


def test_the_ray_executor_asks_for_a_gpu_for_gpu_cells_only():
    from iadbench.runner.executor import CellTask
    from iadbench_ray.executor import RayExecutor, _Job

    asked = []

    class Remote:
        def options(self, **options):
            asked.append(options)
            return self

        def remote(self, *args):
            return object()

    ray = RayExecutor.__new__(RayExecutor)  # no cluster: only how a task is asked for
    ray.threads, ray.timeout_s, ray.preload, ray._memory_mb, ray._remote = 2, None, [], lambda cell: None, Remote()
    ray._lock, ray._pending, ray._wake = threading.Lock(), {}, threading.Event()
    for device in ("cpu", "cuda", "cuda:1"):
        ray._launch(_Job(CellTask(_cell(device, device), Path("x")), None))
    assert ["num_gpus" in a for a in asked] == [False, True, True] and asked[1]["num_gpus"] == 1


def test_a_cell_process_sees_only_its_gpu(monkeypatch):
    """What a cell process sets first (_cell_entry), before the cell's code imports anything."""
    from iadbench.runner.executor import _cell_environment

    for var in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "7")
    _cell_environment(2, None)
    assert devices.os.environ["CUDA_VISIBLE_DEVICES"] == "7"  # a CPU cell's environment is left as it was
    _cell_environment(2, 1)
    assert devices.os.environ["CUDA_VISIBLE_DEVICES"] == "1" and devices.os.environ["OMP_NUM_THREADS"] == "2"


def test_records_carry_the_device_and_old_ones_migrate_to_the_cpu():
    from iadbench.results.record import SCHEMA_VERSION, CellRecord, build_record, migrate

    identity = {"key": "k", "detector": "d", "detector_name": "d", "dataset": "x", "category": "c", "seed": 0}
    record = build_record(identity, {"status": "ok", "device": "cuda:1", "device_name": "NVIDIA H100",
                                     "cost": {"peak_gpu_mb": 812.5, "peak_rss_mb": 900.0}})
    body = record.to_json()
    assert body["device"] == "cuda:1" and body["device_name"] == "NVIDIA H100" and body["cost"]["peak_gpu_mb"] == 812.5
    assert SCHEMA_VERSION == 3
    v1 = {**identity, "schema_version": 1, "status": "ok", "settings": {"a": 1}}
    assert CellRecord.from_json(v1).device == "cpu"
    failed = migrate({**v1, "status": "failed"}, 1)
    assert failed.get("device") is None and failed["schema_version"] == SCHEMA_VERSION


def _fitted_folder(tmp_path: Path, name: str, params: dict) -> Path:
    """A model folder of ``name`` fitted on the CPU on a few synthetic images."""
    from iadbench.detector import FitContext
    from iadbench.plugins import get_registry

    detector = get_registry().detector(name).factory(**params)
    size = detector.input_size
    images = np.random.default_rng(0).integers(90, 110, (6, *size, 3), dtype=np.uint8)
    detector.fit(images, FitContext(seed=0, workdir=tmp_path / "work"))
    return detector.save(tmp_path / name), images


@pytest.mark.parametrize(("name", "params", "moved", "kept_on_cpu"), [
    ("conv_ae", {"input_size": 32, "epochs": 1, "batch": 4}, ["net"], []),
    ("pixel_gaussian", {"input_size": 32}, ["mean", "std"], []),
])
def test_a_model_saved_on_the_cpu_loads_onto_another_device(tmp_path, name, params, moved, kept_on_cpu):
    """Tensors are read onto the CPU and then moved (``Detector.to``): "meta" stands in
    for a GPU here (a device that holds tensors without data)."""
    from iadbench.artifacts import load_detector

    folder, images = _fitted_folder(tmp_path, name, params)
    on_cpu = load_detector(folder)
    assert on_cpu.device == "cpu"
    elsewhere = load_detector(folder, device="meta")
    assert elsewhere.device == "meta"
    for attr in moved:
        value = getattr(elsewhere, attr)
        tensors = list(value.parameters()) if isinstance(value, torch.nn.Module) else [value]
        assert tensors and all(t.device.type == "meta" for t in tensors), attr
    # and the CPU load scores exactly as the fitted one did
    first = on_cpu.predict(images[:2])
    assert np.isfinite(first.scores).all() and first.maps.shape == (2, *on_cpu.input_size)


def test_padim_keeps_its_statistics_on_the_cpu_and_moves_only_its_backbone(tmp_path):
    from iadbench.plugins import get_registry

    padim = get_registry().detector("padim").factory(input_size=64)
    padim.mean = torch.zeros(4, 3)
    padim.to("meta")
    assert padim.device == "meta" and padim.mean.device.type == "cpu"  # float64 statistics stay on the CPU
    assert padim._extractor is None  # built on first use, on padim.device


def test_open_model_on_a_gpu_this_machine_lacks_is_one_line(tmp_path):
    from iadbench.model import open_model

    if not NO_GPU:
        pytest.skip("this machine has a GPU")
    with pytest.raises(InputError) as err:
        open_model(tmp_path, device="cuda")
    assert "device cuda: this machine has no GPU" in str(err.value) and "\n" not in str(err.value)


def test_a_run_records_where_its_cells_computed(tmp_path):
    from iadbench.devices import cpu_model

    run_dir = tmp_path / "r"
    assert cli("run", "-d", "pixel_gaussian", "--category", "bottle", "--set", "pixel_gaussian.input_size=32",
               "--device", "cpu", "--workers", "1", "--run-dir", str(run_dir)) == 0
    (record,) = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert record["device"] == "cpu" and record["device_name"] == cpu_model() and record["cost"]["peak_gpu_mb"] is None
    info = json.loads((run_dir / "run.json").read_text())
    assert info["plan"]["device"] == "cpu" and info["environment"]["device"] == "cpu"
    assert all(c["device"] == "cpu" for c in info["cells"])
    model = json.loads(next(run_dir.glob("cells/*/model/model.json")).read_text())
    assert model["info"]["device"] == "cpu"
    # resuming on a GPU would change every key: refused in one line
    assert cli("run", "--resume", "--run-dir", str(run_dir), "--device", "cuda") == 2


def test_the_forkserver_preload_never_touches_cuda():
    """Cells fork from a forkserver that imported PRELOAD: a CUDA context (or a device
    count, which starts the driver) made there would not survive the fork."""
    import subprocess
    import sys

    from iadbench.runner.cell import PRELOAD

    code = (
        "import importlib, torch\n"
        "def touched(*a, **k):\n"
        "    raise SystemExit('CUDA touched while importing the preload')\n"
        "for name in ('_lazy_init', 'init', 'is_available', 'device_count', 'get_device_name'):\n"
        "    setattr(torch.cuda, name, touched)\n"
        f"for module in {list(PRELOAD)!r}:\n"
        "    importlib.import_module(module)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
