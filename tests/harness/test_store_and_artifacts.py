"""RunStore repair of torn files, read_artifact's one-line errors, env_flag."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from iadbench.detector import CONFIG_FILE, WEIGHTS_FILE, read_artifact
from iadbench.errors import InputError
from iadbench.results.store import RunStore
from iadbench.switches import env_flag


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "run")
    s.create({"run_id": "r"})
    return s


def rec(key: str, status: str = "ok", **extra) -> dict:
    return {"key": key, "status": status, "detector": "d", "dataset": "ds", "category": "c", "seed": 0, **extra}


def test_repair_cuts_only_a_torn_last_line(store):
    good = json.dumps(rec("a")) + "\n"
    store.records_file.write_text(good + '{"key": "b", "sta')
    assert store.repair() == len('{"key": "b", "sta')
    assert store.records_file.read_text() == good
    assert store.repair() == 0  # already whole
    store.append(rec("c"))
    assert [r.key for r in store.records()] == ["a", "c"]


def test_repair_of_an_empty_file_and_of_a_lone_torn_line(store):
    assert store.records_file.read_text() == ""
    assert store.repair() == 0 and store.records_file.read_text() == ""
    store.records_file.write_text('{"key": "x"')
    assert store.repair() == len('{"key": "x"')
    assert store.records_file.read_text() == "" and list(store.records()) == []


def test_latest_records_prefer_ok_over_later_failures(store):
    for r in (rec("a", "failed"), rec("a", "ok", seed=1), rec("a", "failed"),
              rec("b", "failed", seed=1), rec("b", "failed", seed=2)):
        store.append(r)
    latest = store.latest_records()
    assert latest["a"].seed == 1 and latest["b"].seed == 2
    assert store.done_keys() == {"a"}


def _artifact(folder, config=None, tensors=True):
    folder.mkdir()
    cfg = {"format": 1, "detector": "padim", "params": {}} if config is None else config
    (folder / CONFIG_FILE).write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    if tensors:
        save_file({"w": torch.ones(2)}, folder / WEIGHTS_FILE)
    return folder


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d.mkdir(), "no config.json"),
        (lambda d: _artifact(d, config="{not json"), "unreadable detector config"),
        (lambda d: _artifact(d, config={"format": 99, "detector": "padim"}), "unsupported artifact format"),
        (lambda d: _artifact(d, config={"format": 1}), "unsupported artifact format"),
        (lambda d: _artifact(d, tensors=False), "missing weights file"),
    ],
)
def test_read_artifact_errors_name_the_file(tmp_path, make, message):
    folder = tmp_path / "model"
    make(folder)
    with pytest.raises(InputError, match=message) as err:
        read_artifact(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_read_artifact_corrupt_weights(tmp_path):
    folder = _artifact(tmp_path / "model")
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt weights file") as err:
        read_artifact(folder)
    assert str(folder / WEIGHTS_FILE) in str(err.value)
    config, tensors = read_artifact(_artifact(tmp_path / "fine"))
    assert config["detector"] == "padim" and torch.equal(tensors["w"], torch.ones(2))


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("yes", True), ("on", True), ("anything", True), (" TRUE ", True),
    ("0", False), ("false", False), ("No", False), ("OFF", False), ("", False), ("  ", False),
])
def test_env_flag_words(monkeypatch, value, expected):
    monkeypatch.setenv("IADBENCH_TEST_FLAG", value)
    assert env_flag("IADBENCH_TEST_FLAG") is expected
    assert env_flag("IADBENCH_TEST_FLAG", default=not expected) is expected  # a set value wins


def test_env_flag_unset_uses_the_default(monkeypatch):
    monkeypatch.delenv("IADBENCH_TEST_FLAG", raising=False)
    assert env_flag("IADBENCH_TEST_FLAG") is False
    assert env_flag("IADBENCH_TEST_FLAG", default=True) is True
