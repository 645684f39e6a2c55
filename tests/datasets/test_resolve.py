"""Where a dataset's data is looked for, and its parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from iadbench.datasets import resolve_dataset
from iadbench.errors import InputError, UnknownNameError
from iadbench.plugins import Registry, load_registry
from iadbench.types import DatasetSpec


def _registry():
    reg = Registry()
    record = lambda path, **params: (path, params)  # noqa: E731
    reg.datasets["pub"] = DatasetSpec(name="pub", factory=record, subdir="pub_data", params={"k": 1})
    reg.datasets["gen"] = DatasetSpec(name="gen", factory=record, subdir=None)
    return reg


def test_precedence_explicit_then_data_root_then_env_then_none(monkeypatch, tmp_path):
    reg = _registry()
    monkeypatch.delenv("IADBENCH_DATA_ROOT", raising=False)
    assert resolve_dataset(reg, "pub") == (None, {"k": 1})
    monkeypatch.setenv("IADBENCH_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_dataset(reg, "pub")[0] == tmp_path / "env" / "pub_data"
    assert resolve_dataset(reg, "pub", data_root=tmp_path / "root")[0] == tmp_path / "root" / "pub_data"
    assert resolve_dataset(reg, "pub", data_root=tmp_path / "root", path=tmp_path / "mine")[0] == tmp_path / "mine"
    assert resolve_dataset(reg, "gen", data_root=tmp_path / "root") == (None, {})
    assert resolve_dataset(reg, "gen", path=Path("x"))[0] == Path("x")


def test_params_merge_and_unknown_names(monkeypatch):
    reg = _registry()
    assert resolve_dataset(reg, "pub", k=5)[1] == {"k": 5}
    with pytest.raises(InputError, match="has no parameter 'q'"):
        resolve_dataset(reg, "pub", q=1)
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'"):
        resolve_dataset(reg, "nope")


def test_all_five_dataset_plugins_are_registered():
    datasets = load_registry().datasets
    assert {"mvtec", "visa", "ksdd2", "folder", "factory"} <= set(datasets)
    assert datasets["mvtec"].subdir == "mvtec_ad" and datasets["visa"].subdir == "visa"
    assert datasets["ksdd2"].subdir == "ksdd2"


def test_public_benchmark_without_data_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv("IADBENCH_DATA_ROOT", raising=False)
    with pytest.raises(InputError, match="--data-root"):
        resolve_dataset(load_registry(), "mvtec")
