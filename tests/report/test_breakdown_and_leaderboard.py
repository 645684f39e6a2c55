"""Per-defect-type breakdown from a hand-made score set, and how leaderboards show
bootstrap intervals (bold where an interval overlaps the best one's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from iadbench.report.breakdown import defect_breakdown
from iadbench.report.leaderboard import metric_table, render, write
from iadbench.report.records import load_runs

from .conftest import SCORES


def test_defect_breakdown_against_sklearn_and_counting():
    frame = pd.DataFrame(SCORES, columns=["path", "label", "defect_type", "score"])
    table = defect_breakdown(frame, threshold=0.5).set_index("defect_type")
    good = [0.10, 0.20, 0.30, 0.55]
    for defect, bad in (("crack", [0.90, 0.60, 0.25]), ("scratch", [0.50, 0.95])):
        expected = roc_auc_score([0] * 4 + [1] * len(bad), good + bad)
        assert np.isclose(table.loc[defect, "auroc"], expected)
        assert table.loc[defect, "images"] == len(bad)
    assert np.isclose(table.loc["crack", "recall"], 2 / 3)  # 0.90, 0.60 above 0.5; 0.25 not
    assert np.isclose(table.loc["scratch", "recall"], 1 / 2)  # 0.50 is not strictly above
    assert np.isnan(defect_breakdown(frame, None)["recall"]).all()


def test_bold_marks_every_interval_overlapping_the_best(two_detector_run):
    frame, _ = load_runs([two_detector_run])
    table = metric_table(frame, "image_auroc")
    assert table.loc["alpha", "ds/c1"] == "**0.950 [0.90, 0.99]**"
    assert table.loc["beta", "ds/c1"] == "**0.920 [0.85, 0.97]**"  # overlaps alpha's interval
    assert table.loc["gamma", "ds/c1"] == "0.700 [0.60, 0.80]"  # does not


def test_markdown_has_folded_defect_table_and_report_link(two_detector_run, tmp_path):
    text = render([two_detector_run])
    assert "<details><summary>ds: per defect type</summary>" in text
    assert "| c1         | crack" in text and "0.833 / 0.667" in text  # crack: AUROC 10/12, recall 2/3
    (two_detector_run / "report.html").write_text("<html></html>")
    out = write([two_detector_run], tmp_path / "boards" / "lb.md")
    assert "[../run/report.html](../run/report.html)" in out.read_text()


def test_compare_gives_a_paired_p_value_per_shared_cell(two_detector_run):
    from iadbench.report.compare import compare

    table = compare(two_detector_run, two_detector_run).set_index("detector")
    assert (table["p image AUROC"] == 1.0).all()  # every cell against itself
