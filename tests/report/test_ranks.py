"""Mean ranks across dataset/category blocks, the Friedman test and the Nemenyi critical
difference, checked against brute force and against Demšar (2006): his Table 5a of
critical values and his worked example (Table 6, four C4.5 variants on 14 data sets)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2 as chi2_dist
from scipy.stats import friedmanchisquare

from iadbench.report.leaderboard import render
from iadbench.report.ranks import (
    block_ranks,
    cliques,
    critical_difference,
    friedman,
    nemenyi_q,
    rank_detectors,
    value_matrix,
)
from iadbench.results.store import RunStore

# Demšar (2006) Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 UCI data sets.
# The paper's printed ranks break the voting tie of C4.5+cf and C4.5+m+cf (0.975 each,
# rounded) with C4.5+cf ahead: the unrounded values differ, so C4.5+cf gets 0.97501.
C45 = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
TABLE6 = {
    "adult": (0.763, 0.768, 0.771, 0.798), "breast_cancer": (0.599, 0.591, 0.590, 0.569),
    "breast_cancer_wisconsin": (0.954, 0.971, 0.968, 0.967), "cmc": (0.628, 0.661, 0.654, 0.657),
    "ionosphere": (0.882, 0.888, 0.886, 0.898), "iris": (0.936, 0.931, 0.916, 0.931),
    "liver_disorders": (0.661, 0.668, 0.609, 0.685), "lung_cancer": (0.583, 0.583, 0.563, 0.625),
    "lymphography": (0.775, 0.838, 0.866, 0.875), "mushroom": (1.000, 1.000, 1.000, 1.000),
    "primary_tumor": (0.940, 0.962, 0.965, 0.962), "rheum": (0.619, 0.666, 0.614, 0.669),
    "voting": (0.972, 0.981, 0.97501, 0.975), "wine": (0.957, 0.978, 0.946, 0.970),
}


def frame_of(values: dict[tuple[str, str], list[float] | float], dataset: str = "ds") -> pd.DataFrame:
    """A load_runs-like frame: (detector, category) -> value or values over seeds; None is a failed cell."""
    rows = []
    for (det, cat), vals in values.items():
        for seed, v in enumerate(vals if isinstance(vals, list) else [vals]):
            rows.append({"detector": det, "dataset": dataset, "category": cat, "column": f"{dataset}/{cat}",
                         "seed": seed, "status": "ok" if v is not None else "failed", "metrics.image_auroc": v})
    return pd.DataFrame(rows)


def table6_frame() -> pd.DataFrame:
    return frame_of({(det, cat): row[i] for cat, row in TABLE6.items() for i, det in enumerate(C45)}, "uci")


@pytest.mark.parametrize("k, published", list(zip(range(2, 11), (1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031,
                                                                 3.102, 3.164))))
def test_critical_values_match_demsar_table_5a(k, published):
    assert nemenyi_q(k) == pytest.approx(published, abs=1e-3)  # the table's 3 decimals


def test_demsar_worked_example():
    r = rank_detectors(table6_frame(), "image_auroc")
    # the paper's average ranks and CD (alpha 0.05)
    assert r.mean_ranks.to_dict() == pytest.approx(
        {"C4.5": 3.143, "C4.5+m": 2.000, "C4.5+cf": 2.893, "C4.5+m+cf": 1.964}, abs=5e-4)
    assert list(r.mean_ranks.index) == ["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]
    assert r.cd == pytest.approx(1.25, abs=5e-3)
    # The paper's chi2_F = 9.28 has no tie correction; scipy's (ours) divides by
    # 1 - sum(t^3 - t) / (N k (k^2 - 1)), by hand: a 4-way tie (mushroom) and three 2-way
    # ties (iris, lung cancer, primary tumor): 1 - (60 + 3 * 6) / (14 * 4 * 15).
    totals = np.array([44.0, 28.0, 40.5, 27.5])  # rank sums: the paper's mean ranks times 14
    uncorrected = 12 / (14 * 4 * 5) * (totals ** 2).sum() - 3 * 14 * 5
    assert uncorrected == pytest.approx(9.28, abs=5e-3)
    chi2 = uncorrected / (1 - 78 / 840)
    assert r.friedman[0] == pytest.approx(chi2, rel=1e-9)
    assert r.friedman[1] == pytest.approx(chi2_dist.sf(chi2, 3), rel=1e-9)
    assert r.iman_davenport[0] == pytest.approx(13 * chi2 / (14 * 3 - chi2), rel=1e-9)
    assert r.iman_davenport[1] < 0.05 and r.separated
    # best to worst is 1.179 < CD: the post-hoc test separates no pair (as the paper says)
    assert r.groups == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]
    assert r.not_separable("C4.5") == ["C4.5+m+cf", "C4.5+m", "C4.5+cf"]
    # at alpha 0.10 (q = 2.291, CD = 1.12) C4.5 falls apart from the two +m variants
    r10 = rank_detectors(table6_frame(), "image_auroc", alpha=0.10)
    assert r10.cd == pytest.approx(2.291 * math.sqrt(20 / 84), abs=1e-3)
    assert r10.groups == [["C4.5+m+cf", "C4.5+m", "C4.5+cf"], ["C4.5+cf", "C4.5"]]
    assert r10.not_separable("C4.5") == ["C4.5+cf"]


def test_mean_ranks_match_brute_force_with_ties_seeds_and_lower_is_better():
    rng = np.random.default_rng(3)
    detectors, categories = ["a", "b", "c", "d", "e"], [f"c{i}" for i in range(7)]
    # two seeds each, values on a coarse grid so that cells tie
    values = {(d, c): list(rng.integers(0, 4, 2) / 4) for d in detectors for c in categories}
    for higher in (True, False):
        r = rank_detectors(frame_of(values), "image_auroc", higher_is_better=higher)
        means = {key: np.mean(v) for key, v in values.items()}
        for d in detectors:
            expected = []
            for c in categories:
                mine = means[(d, c)]
                others = [means[(o, c)] for o in detectors if o != d]
                better = sum((o > mine) if higher else (o < mine) for o in others)
                expected.append(1 + better + 0.5 * sum(o == mine for o in others))
            assert r.mean_ranks[d] == pytest.approx(np.mean(expected), abs=1e-12)
        assert list(r.mean_ranks) == sorted(r.mean_ranks)


def test_friedman_is_scipys_on_the_cells_seed_means():
    rng = np.random.default_rng(7)
    values = {(d, f"c{i}"): list(rng.random(3)) for d in "pqrst" for i in range(8)}
    r = rank_detectors(frame_of(values), "image_auroc")
    columns = [[np.mean(values[(d, f"c{i}")]) for i in range(8)] for d in "pqrst"]
    statistic, p = friedmanchisquare(*columns)
    assert r.friedman == pytest.approx((statistic, p), rel=1e-12)


def test_friedman_of_perfect_agreement_by_hand():
    # k = 3, N = 4, ranks 1, 2, 3 in every block: chi2 = 12/(N k (k+1)) * (4^2 + 8^2 + 12^2) - 3 N (k+1) = 8
    matrix = pd.DataFrame([[0.9, 0.8, 0.7]] * 4, columns=["x", "y", "z"])
    (chi2, p), (f_stat, f_p) = friedman(matrix)
    assert chi2 == pytest.approx(8.0) and p == pytest.approx(math.exp(-4))  # chi2 with 2 df: exp(-x/2)
    assert f_stat == math.inf and f_p == 0.0  # N(k-1) - chi2 = 0
    assert friedman(pd.DataFrame([[0.5, 0.5, 0.5]] * 4)) == ((0.0, 1.0), (0.0, 1.0))


def test_cliques_against_brute_force():
    rng = np.random.default_rng(11)
    for _ in range(300):
        k = int(rng.integers(2, 9))
        ranks = pd.Series(np.round(rng.uniform(1, k, k) * 4) / 4, index=[f"d{i}" for i in range(k)])
        cd = float(rng.uniform(0.2, 3.0))
        groups = cliques(ranks, cd)
        for a, b in itertools.combinations(ranks.index, 2):
            together = any(a in g and b in g for g in groups)
            assert together == (abs(ranks[a] - ranks[b]) < cd)
        assert all(len(g) >= 2 for g in groups)
        assert not any(set(g) < set(h) for g in groups for h in groups)


def test_two_detectors_need_no_omnibus_test():
    r = rank_detectors(frame_of({(d, f"c{i}"): v for i in range(5) for d, v in (("a", 0.9), ("b", 0.8))}),
                       "image_auroc")
    assert r.friedman is None and r.separated
    assert r.cd == pytest.approx(1.960 * math.sqrt(1 / 5), abs=1e-3)  # k = 2: 2*3/(6N) = 1/N
    assert r.groups == [] and r.not_separable("a") == []  # 1 rank apart > 0.877


def test_no_pair_is_separated_unless_friedman_rejects():
    # b beats c by a whole rank everywhere, a sits between them at random: with 3
    # blocks the omnibus test cannot reject
    values = {("a", "c1"): 0.95, ("b", "c1"): 0.9, ("c", "c1"): 0.1,
              ("a", "c2"): 0.5, ("b", "c2"): 0.9, ("c", "c2"): 0.1,
              ("a", "c3"): 0.05, ("b", "c3"): 0.9, ("c", "c3"): 0.1}
    r = rank_detectors(frame_of(values), "image_auroc")
    assert r.iman_davenport[1] >= 0.05 and not r.separated
    assert r.groups == [["b", "a", "c"]]
    assert r.not_separable("b") == ["a", "c"]


def test_incomplete_blocks_are_dropped_and_a_rare_detector_left_out():
    values = {(d, f"c{i}"): 0.5 + 0.1 * j for j, d in enumerate("abc") for i in range(6)}
    values[("a", "c2")] = None  # failed: c2 is dropped
    values[("z", "c0")] = 0.99  # one block of six: z is left out rather than dropping five
    frame = frame_of(values)
    assert value_matrix(frame, "image_auroc").shape == (6, 4)
    r = rank_detectors(frame, "image_auroc")
    assert r.dropped == ["ds/c2"] and r.left_out == ["z"]
    assert r.blocks == ["ds/c0", "ds/c1", "ds/c3", "ds/c4", "ds/c5"]
    assert r.mean_ranks.to_dict() == {"c": 1.0, "b": 2.0, "a": 3.0}
    ranks = block_ranks(value_matrix(frame, "image_auroc").loc[r.blocks, ["a", "b", "c"]])
    assert (ranks.to_numpy() == [3.0, 2.0, 1.0]).all()


def test_critical_difference_is_the_formula():
    assert critical_difference(4, 14) == pytest.approx(nemenyi_q(4) * math.sqrt(20 / 84))


# --- the leaderboard section and the report's diagram ---------------------------------


def make_run(path: Path, categories: list[str]) -> Path:
    """Three detectors whose image AUROC orders them the same way in every category."""
    store = RunStore(path)
    store.create({"run_id": path.name, "plan": {"settings": {"threshold_rule": "quantile:0.99", "holdout_fraction": 0.1}},
                  "environment": {"cpu": "Test CPU", "cpu_count": 2, "packages": {}}})
    for i, cat in enumerate(categories):
        for det, auroc in (("alpha", 0.95), ("beta", 0.85 + 0.01 * i), ("gamma", 0.6)):
            store.append({
                "key": f"{det}-{cat}-0", "detector": det, "detector_name": det, "detector_version": "1",
                "dataset": "ds", "category": cat, "seed": 0, "status": "ok", "error": None, "params": {},
                "metrics": {"image_auroc": auroc, "pixel_auroc": None, "aupro": None, "f1": 0.5},
                "cost": {"fit_s": 1.0, "latency_ms_p50": 10.0, "peak_rss_mb": 100.0},
            })
    return path


def test_leaderboard_has_the_section_with_three_blocks_not_with_two(tmp_path):
    text = render([make_run(tmp_path / "three", ["c1", "c2", "c3"])])
    assert "## Across datasets" in text
    section = text.split("## Across datasets")[1].split("\n## ")[0]
    # ranks 1, 2, 3 in all 3 blocks: Friedman chi2 = N(k-1) = 6, p = exp(-3); F unbounded
    assert "Friedman χ²(2) = 6.00, p = 0.0498" in section
    assert "Iman-Davenport F(2, 4) = ∞, p < 0.0001" in section
    assert "CD = 2.344 · √(k(k+1)/6N) = 1.91 (k = 3, N = 3)" in section
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    assert rows == [["detector", "mean rank", "blocks", "not separable from"],
                    ["alpha", "1.00", "3", "beta"], ["beta", "2.00", "3", "alpha, gamma"], ["gamma", "3.00", "3", "beta"]]
    two = render([make_run(tmp_path / "two", ["c1", "c2"])])
    assert "Across datasets" not in two


def test_report_writes_the_critical_difference_diagram(tmp_path):
    from iadbench.report.html import write_report

    page = write_report([make_run(tmp_path / "run", ["c1", "c2", "c3"])], tmp_path / "out" / "index.html")
    picture = page.parent / "index_files" / "ranks.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "<section id='across-datasets'>" in text and 'src="index_files/ranks.png"' in text


def test_too_few_complete_blocks_leave_a_one_line_note():
    from iadbench.report.leaderboard import registered_metrics
    from iadbench.report.ranks import across_section

    values = {("a", "c1"): 0.9, ("a", "c2"): None, ("a", "c3"): 0.7, ("b", "c1"): 0.5, ("b", "c2"): 0.5, ("b", "c3"): None}
    lines = across_section(frame_of(values), registered_metrics())
    assert lines[1] == "## Across datasets" and len(lines) == 4
    assert lines[3].startswith("_Not ranked: 1 block(s) where 2 detector(s) all have a value;")
    assert "2 block(s) dropped, a ranked detector has no value there: ds/c2, ds/c3." in lines[3]
