"""The cell record schema: old records migrate, load, render and resume; new ones are
checked when written; the published JSON Schema is current and holds for real records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from iadbench.errors import InputError
from iadbench.plugins import get_registry
from iadbench.report import leaderboard
from iadbench.report.records import identity_hash, load_runs
from iadbench.results.record import SCHEMA_VERSION, CellRecord, build_record, json_schema
from iadbench.results.store import RunStore

#: Seven records as iadbench wrote them before the schema existed (from a real run of
#: the factory, trimmed to two detectors and three categories, plus a failed cell), and
#: the leaderboard the code of that time rendered from them.
FIXTURE = Path(__file__).parent / "fixtures" / "run_v0"
TITLE = "Records written before the schema"
ROOT = Path(__file__).parents[2]


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run_v0"
    shutil.copytree(FIXTURE, run)
    return run


def test_old_records_render_the_same_leaderboard_byte_for_byte(old_run, tmp_path):
    out = tmp_path / "board.md"
    leaderboard.write([old_run], out, get_registry().metrics, TITLE)
    assert out.read_bytes() == (FIXTURE / "leaderboard.md").read_bytes()


def test_old_records_are_migrated_and_resume_where_they_stopped(old_run):
    store = RunStore(old_run)
    records = list(store.records())
    assert len(records) == 7 and all(r.schema_version == SCHEMA_VERSION for r in records)
    assert sum(r.ok for r in records) == 6
    assert len(store.done_keys()) == 6  # the failed cell is run again on --resume
    # a resumed run appends current records behind the old ones; both read back
    new = records[0].model_copy(update={"key": "new0000000000000", "category": "nut"})
    store.append(new)
    again = store.latest_records()
    assert again["new0000000000000"].metrics == records[0].metrics
    assert json.loads(store.records_file.read_text().splitlines()[-1])["schema_version"] == SCHEMA_VERSION


def test_an_early_record_takes_its_settings_from_the_run_and_its_name_from_its_label(old_run):
    """The earliest records had no detector_name and no settings: the migration takes the
    label as the name and the run's plan settings, so the record matches a current one of
    the same setup (before the schema, such a record got an identity of its own)."""
    current = json.loads((FIXTURE / "records.jsonl").read_text().splitlines()[0])
    early = {k: v for k, v in current.items() if k not in ("detector_name", "settings", "verdicts", "intervals")}
    settings = json.loads((FIXTURE / "run.json").read_text())["plan"]["settings"]
    record = CellRecord.from_json(early, settings)
    assert record.detector_name == current["detector"] and record.settings == settings
    assert identity_hash(record) == identity_hash(CellRecord.from_json(current))


def test_a_record_of_a_newer_schema_is_refused_in_one_line(old_run):
    lines = (old_run / "records.jsonl").read_text().splitlines()
    newer = {**json.loads(lines[0]), "schema_version": SCHEMA_VERSION + 1}
    (old_run / "records.jsonl").write_text("\n".join([*lines, json.dumps(newer)]) + "\n")
    with pytest.raises(InputError) as info:
        load_runs([old_run])
    message = str(info.value)
    assert "records.jsonl" in message and f"schema version {SCHEMA_VERSION + 1}" in message and "\n" not in message


def test_a_record_that_does_not_fit_is_skipped_with_a_warning_naming_its_line(old_run):
    lines = (old_run / "records.jsonl").read_text().splitlines()
    bad = {**json.loads(lines[0]), "status": "half-done"}
    (old_run / "records.jsonl").write_text("\n".join([*lines, json.dumps(bad)]) + "\n")
    with pytest.warns(UserWarning, match=r"records\.jsonl:8: skipped: .*status"):
        records = list(RunStore(old_run).records())
    assert len(records) == 7


def test_a_cell_result_outside_the_schema_becomes_a_failed_record_saying_why():
    from iadbench.runner.plan import Cell
    from iadbench.runner.runner import _record

    cell = Cell(key="k", label="padim", detector="padim", detector_version="4", dataset="factory",
                dataset_version="2", dataset_path=None, dataset_params={}, data_root=None, category="wood",
                seed=0, params={}, settings={})
    record = _record(cell, {"status": "ok", "metrics": {"image_auroc": 0.9}, "mtrics_typo": {}}, "run")
    assert record.status == "failed" and "mtrics_typo" in record.error
    ok = _record(cell, {"status": "ok", "metrics": {"image_auroc": 0.9}}, "run")
    assert ok.ok and ok.metrics == {"image_auroc": 0.9} and ok.detector_name == "padim"


def test_the_published_json_schema_is_current():
    published = json.loads((ROOT / "docs" / "record.schema.json").read_text())
    assert published == json_schema(), "regenerate: python -m iadbench.results.record > docs/record.schema.json"


def test_real_records_validate_against_the_json_schema_and_a_broken_one_does_not():
    schema = json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    for line in (FIXTURE / "records.jsonl").read_text().splitlines():
        validator.validate(CellRecord.from_json(json.loads(line)).to_json())
    broken = CellRecord.from_json(json.loads((FIXTURE / "records.jsonl").read_text().splitlines()[0])).to_json()
    broken["counts"]["test"] = "forty"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_build_record_names_the_field_that_does_not_fit():
    with pytest.raises(InputError, match=r"cell k result does not fit the record schema: threshold\.rule"):
        build_record({"key": "k", "detector": "d", "detector_name": "d", "dataset": "ds", "category": "c", "seed": 0},
                     {"status": "ok", "threshold": {"rule": 3}})
