"""The visual report of one or more runs: one static HTML page plus its PNGs.

No server, no CDN, no script: the page opens from disk. It leads with the answer, on
the first headline metric (image AUROC with the built-in metrics): per dataset the best
detector with its interval and the detectors not separable from it (``standings``), a
detectors x categories table coloured by score (``first_screen``) and the speed/quality
chart with its Pareto front; then the winner's gallery, open. Below: the leaderboard
tables, the verdicts, the cost table and, per cell (folded), the image-level ROC and PR
curves, the score histograms with the calibrated threshold, false alarms and recall by
threshold beside the calibration scores and their tail fit, the per-defect-type table
and a gallery of the worst and a few best test images (image | ground-truth outline |
heatmap), drawn from what each cell kept (``scores.csv``, ``gallery.safetensors``).

``write_report(runs, page)`` writes ``page`` and its pictures into ``<page stem>_files/``
beside it; the page is replaced atomically once every picture exists.
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from iadbench.report import plots
from iadbench.report.breakdown import defect_breakdown, read_calibration, read_scores, tail_curve
from iadbench.report.first_screen import heat_table_html, summary_html
from iadbench.report.leaderboard import cost_table, metric_table, registered_metrics, verdict_table
from iadbench.report.ranks import across_html
from iadbench.report.records import load_runs
from iadbench.report.standings import DatasetBest, best_per_dataset
from iadbench.types import MetricSpec
from iadbench.visual.gallery import read_gallery

GT_RGB = (255, 0, 0)

_CSS = """
body{font-family:system-ui,sans-serif;margin:1em 1.5em;color:#222;max-width:1300px}
h1{font-size:1.6em;margin:.2em 0}
#first-screen h2{font-size:1.1em;margin:.4em 0 .2em}
ul.best{margin:.2em 0;padding-left:1.2em;font-size:14px}ul.best li{margin:.15em 0}
.first{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
table.heat th{text-align:center}table.heat td{font-variant-numeric:tabular-nums}table.heat td.mean{border-left:2px solid #555}
.scale span{padding:0 4px}#heat .note{max-width:36em}
#speed-quality{margin:0;flex:none}#speed-quality figcaption{max-width:none;word-break:normal}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th:first-child,td:first-child{text-align:left}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
figure{display:inline-block;margin:4px;font-size:11px;vertical-align:top}
figcaption{max-width:400px;word-break:break-all}
.note{color:#555;font-size:13px}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def frame_html(table: pd.DataFrame, index: bool = True) -> str:
    """A table of strings as HTML; markdown ``**bold**`` becomes <b>."""
    head = ([table.index.name or ""] if index else []) + [str(c) for c in table.columns]
    rows = ["<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for idx, row in table.iterrows():
        cells = ([idx] if index else []) + list(row)
        rows.append("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        value = "–" if math.isnan(value) else f"{value:.3f}"
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _esc(value))


def _gallery_picture(image: np.ndarray, amap: np.ndarray, mask: np.ndarray, display_range, pixel_threshold) -> np.ndarray:
    """image | image with the ground-truth outline | heatmap overlay, side by side."""
    from iadbench.visual import outline_mask, overlay

    with_gt = image.copy()
    with_gt[outline_mask(mask.astype(bool))] = GT_RGB
    heat = overlay(image, amap.astype(np.float32), display_range, pixel_threshold)
    gap = np.full((image.shape[0], 3, 3), 255, np.uint8)
    return np.concatenate([image, gap, with_gt, gap, heat], axis=1)


def _write_png(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return f"{folder.name}/{name}"


def _gallery_html(row: pd.Series, files: Path) -> str:
    """The cell's worst and best test images (writing their pictures), or "" if none were kept."""
    from iadbench.visual import png_bytes

    key = row["key"]
    gallery = read_gallery(Path(row["cell_dir"]))
    if gallery is None:
        return ""
    index, arrays = gallery
    display = row.get("display_range")
    display = tuple(display) if isinstance(display, (list, tuple)) and len(display) == 2 else (
        float(np.percentile(arrays["maps"], 50)), float(arrays["maps"].max()))
    pixel_threshold = row.get("pixel_threshold")
    pixel_threshold = None if pixel_threshold is None or pd.isna(pixel_threshold) else float(pixel_threshold)
    figures = []
    for i, item in enumerate(index):
        picture = _gallery_picture(arrays["images"][i], arrays["maps"][i], arrays["masks"][i], display, pixel_threshold)
        src = _write_png(files, f"{key}_g{i}.png", png_bytes(picture, compress_level=1))
        caption = f"{item['kind']}: {item['defect_type']}, score {item['score']:.4g} — {Path(item['path']).name}"
        figures.append(f'<figure><img src="{_esc(src)}" alt="{_esc(caption)}" loading="lazy">'
                       f"<figcaption>{_esc(caption)}</figcaption></figure>")
    return ("<p class='note'>Worst and best test images: image | ground truth (red) | heatmap on the "
            "model's fixed display scale, region above the pixel threshold outlined in white.</p>" + "".join(figures))


def _cell_section(row: pd.Series, files: Path) -> str:
    key = row["key"]
    title = f"{row['detector']} · {row['column']} · seed {row['seed']}"
    if row["status"] != "ok":
        return f"<details id='cell-{_esc(key)}'><summary>{_esc(title)}: failed</summary><p>{_esc(row.get('error'))}</p></details>"
    parts = []
    threshold = row.get("threshold")
    threshold = float(threshold) if threshold is not None and not pd.isna(threshold) else None
    scores = read_scores(row["cell_dir"])
    if scores is not None and len(scores):
        src = _write_png(files, f"{key}_curves.png",
                         plots.cell_figure(scores["label"].to_numpy(), scores["score"].to_numpy(), threshold))
        parts.append(f'<img src="{_esc(src)}" alt="ROC, PR and score histograms of {_esc(title)}" width="792">')
        calibration = read_calibration(row["cell_dir"])
        if calibration is not None:
            verdicts = row.get("verdicts") if isinstance(row.get("verdicts"), dict) else {}
            target = verdicts.get("target_fpr")
            src = _write_png(files, f"{key}_calibration.png", plots.calibration_figure(
                calibration, scores["label"].to_numpy(), scores["score"].to_numpy(), threshold, target,
                tail_curve(calibration, threshold)))
            parts.append(f'<img src="{_esc(src)}" alt="false alarms and recall by threshold, {_esc(title)}" width="504">')
        table = defect_breakdown(scores, threshold)
        if not table.empty:
            parts.append("<p class='note'>Per defect type: AUROC against the good test images, recall at the "
                         "calibrated threshold.</p>" + frame_html(table, index=False))
    else:
        parts.append("<p class='note'>no per-image scores kept for this cell</p>")
    gallery = _gallery_html(row, files)
    if gallery:
        parts.append(gallery)
    return f"<details id='cell-{_esc(key)}'><summary>{_esc(title)}</summary>{''.join(parts)}</details>"


#: Cells per worker process before the report draws in parallel (matplotlib is the
#: bulk of the time: ~0.15 s a cell figure on an idle core).
PARALLEL_FROM = 8


def _cell_sections(rows: list[pd.Series], files: Path) -> list[str]:
    """Each cell's HTML (writing its pictures), in order; across processes for a grid."""
    workers = min(os.cpu_count() or 1, 4, max(1, len(rows) // PARALLEL_FROM))
    if workers <= 1:
        return [_cell_section(row, files) for row in rows]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers inherit the imported modules; they only run numpy,
    # matplotlib and PIL (no torch), so forking the parent is safe.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_cell_section, rows, [files] * len(rows), chunksize=4))


def _cpu_name(infos: list[dict]) -> str | None:
    """The CPU the runs measured latency on, for the cost chart's axis."""
    cpus = sorted({str(i.get("environment", {}).get("cpu")) for i in infos if i.get("environment", {}).get("cpu")})
    return cpus[0] if len(cpus) == 1 else ("CPUs differ between runs" if cpus else None)


def _cost_points(frame: pd.DataFrame, metric: str) -> list[tuple[str, float, float]]:
    """(detector, mean latency ms/image p50, mean ``metric``) over each detector's ok cells."""
    ok = frame[frame["status"] == "ok"]
    points = []
    for det, group in ok.groupby("detector"):
        latency = pd.to_numeric(group.get("cost.latency_ms_p50"), errors="coerce").mean()
        value = pd.to_numeric(group.get(f"metrics.{metric}"), errors="coerce").mean()
        points.append((str(det), float(latency), float(value)))
    return points


def _coverage_note(frame: pd.DataFrame) -> str:
    """Which detectors' chart points average fewer columns than the others' (they are
    not comparable like for like); "" when every detector has every column."""
    ok = frame[frame["status"] == "ok"]
    columns = ok.groupby("detector")["column"].nunique()
    short = sorted(str(d) for d in frame["detector"].unique() if columns.get(d, 0) < ok["column"].nunique())
    if not short:
        return ""
    return f" Not on every dataset/category, so their point averages fewer cells: {_esc(', '.join(short))}."


def _winner_galleries(frame: pd.DataFrame, bests: list[DatasetBest], quality: MetricSpec, files: Path) -> str:
    """Per dataset, the winner's gallery open: in its weakest category (where it errs
    most), with links to its other categories' cells."""
    blocks = []
    for entry in bests:
        if not entry.ranked:
            continue
        winner = entry.best.detector
        rows = frame[(frame["detector"] == winner) & (frame["dataset"].astype(str) == entry.dataset)
                     & (frame["status"] == "ok")].sort_values(["category", "seed"])
        values = pd.to_numeric(rows[f"metrics.{quality.name}"], errors="coerce")  # a winner has it
        per_category = values.groupby(rows["category"]).mean().dropna()
        if per_category.empty:
            continue
        weakest = per_category.idxmin() if quality.higher_is_better else per_category.idxmax()
        row = rows[rows["category"] == weakest].iloc[0]
        gallery = _gallery_html(row, files) or "<p class='note'>no gallery kept for this cell</p>"
        others = [r for _, r in rows.iterrows() if r["category"] != weakest]
        links = ", ".join(f"<a href='#cell-{_esc(r['key'])}'>{_esc(r['category'])}</a>" for r in others)
        title = (f"{winner} on {entry.dataset}/{weakest}, seed {row['seed']}"
                 + (f": its weakest category ({quality.title} {per_category[weakest]:.3f})" if len(per_category) > 1 else ""))
        blocks.append(f"<details open class='winner-gallery' id='winner-{_esc(entry.dataset)}'>"
                      f"<summary>{_esc(title)}</summary>{gallery}"
                      + (f"<p class='note'>Its other categories: {links} (under Cells).</p>" if links else "")
                      + "</details>")
    return "<section id='winner'><h2>What the winner sees</h2>" + "".join(blocks) + "</section>" if blocks else ""


def _first_screen(frame: pd.DataFrame, infos: list[dict], quality: MetricSpec, files: Path) -> tuple[str, list]:
    """The answer first: best per dataset, the heat table and the speed/quality chart."""
    bests = best_per_dataset(frame, quality.name, quality.higher_is_better)
    src = _write_png(files, "cost.png", plots.cost_chart(_cost_points(frame, quality.name), quality.title,
                                                         quality.higher_is_better, _cpu_name(infos)))
    width, height = (round(v * plots.DPI) for v in plots.COST_FIGSIZE)
    chart = (f"<figure id='speed-quality' style='width:{width}px'><img src=\"{_esc(src)}\" width=\"{width}\" "
             f"height=\"{height}\" alt=\"latency per image vs {_esc(quality.title)}, one point per detector\">"
             "<figcaption>Blue: on the Pareto front; grey: another detector is both faster and better."
             + _coverage_note(frame) + "</figcaption></figure>")
    return ("<section id='first-screen'>" + summary_html(bests, quality.title)
            + "<div class='first'>" + heat_table_html(frame, quality.name, quality.title, quality.higher_is_better)
            + chart + "</div></section>"), bests


def _sweep_html(frame: pd.DataFrame, specs, files: Path) -> str:
    """What labelled defects buy, per dataset: the chart and its first table ("" without a sweep)."""
    from iadbench.report import supervision

    rows = supervision.sweep_frame(frame)
    if rows.empty or not supervision.sweep_ks(rows):
        return ""
    parts = ["<section id='defects-sweep'><h2>What labelled defects buy</h2>",
             f"<p class='note'>{_esc(supervision.describe(rows).strip('_'))}</p>"]
    for dataset in sorted(rows["dataset"].unique()):
        in_dataset = rows[rows["dataset"] == dataset]
        shown = [(m, specs[m].title) for m in supervision.SWEEP_METRICS
                 if m in specs and f"metrics.{m}" in in_dataset and supervision.curves(in_dataset, m)]
        if not shown:
            continue
        src = _write_png(files, f"sweep-{re.sub(r'[^A-Za-z0-9_.-]', '_', dataset)}.png",
                         supervision.sweep_chart(in_dataset, shown))
        parts.append(f"<h3>{_esc(dataset)}</h3><img src=\"{_esc(src)}\" alt=\"{_esc(', '.join(t for _, t in shown))} "
                     "against the number of labelled defects in training\">")
        parts.append(frame_html(supervision.sweep_table(in_dataset, shown[0][0])))
    return "".join(parts) + "</section>"


def render_html(run_dirs: list[Path], files: Path, metrics: dict[str, MetricSpec] | None = None,
                title: str = "Run report") -> str:
    """The page's HTML; pictures are written into ``files`` as it goes."""
    frame, infos = load_runs(run_dirs)
    specs = registered_metrics(metrics)
    headline = [n for n, s in specs.items() if s.headline]
    body = [f"<h1>{_esc(title)}</h1>",
            f"<p class='note'>{frame['key'].nunique()} cells from {len(infos)} run(s): "
            f"{_esc(', '.join(str(i.get('run_id')) for i in infos))}.</p>"]
    ordered = frame.sort_values(["column", "detector", "seed"])
    sections = _cell_sections([row for _, row in ordered.iterrows()], files)
    if headline:  # the answer first, on the first headline metric
        quality = specs[headline[0]]
        first, bests = _first_screen(frame, infos, quality, files)
        body.append(first)
        body.append(_winner_galleries(frame, bests, quality, files))
    body.append(_sweep_html(frame, specs, files))
    body.append("<h2>Leaderboard</h2><p class='note'>Missing cells are shown as such; bold marks the best value and "
                "every detector whose 95% bootstrap interval overlaps the best one's.</p>")
    for name in headline:
        spec = specs.get(name)
        body.append(f"<h3>{_esc(name)}</h3>")
        if spec is not None and spec.description:
            body.append(f"<p class='note'>{_esc(spec.description)}</p>")
        body.append(frame_html(metric_table(frame, name, spec.higher_is_better if spec else True)))
    body.append(across_html(frame, specs, files))
    verdicts = verdict_table(frame, specs)
    if not verdicts.empty:
        body.append("<h2>Verdicts</h2><p class='note'>What each threshold did on the test set: false alarms on good "
                    "images against the rule's target and recall on defective ones (95% Clopper-Pearson intervals), "
                    "and recall at 1% and 5% false-alarm thresholds calibrated on good training images only.</p>")
        body.append(frame_html(verdicts, index=False))
    costs = cost_table(frame)
    body.append("<h2>Cost</h2>")
    body.append(frame_html(costs) if not costs.empty else "<p>no successful cell</p>")
    body.append("<h2>Cells</h2>")
    for column, section in zip(ordered["column"], sections):
        if f"<h3>{_esc(column)}</h3>" not in body:
            body.append(f"<h3>{_esc(column)}</h3>")
        body.append(section)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def write_report(run_dirs: list[Path], page: Path, metrics: dict[str, MetricSpec] | None = None,
                 title: str = "Run report") -> Path:
    """Write the page and its pictures (``<stem>_files/``); returns the page's path."""
    page = Path(page)
    page.parent.mkdir(parents=True, exist_ok=True)
    files = page.parent / f"{page.stem}_files"
    files.mkdir(exist_ok=True)
    text = render_html(run_dirs, files, metrics, title)
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, page)
    return page
