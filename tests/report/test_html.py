"""The HTML report: every picture it links exists, and it renders in headless
Chromium with every image decoded and nothing on the console; at 1280x800 the first
screen holds the answer (best per dataset, the heat table, the speed/quality chart)
and the winner's gallery is open, checked by element geometry, not pixels."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.remote: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        for name in ("src", "href"):
            if str(attrs.get(name, "")).startswith(("http:", "https:", "//")):
                self.remote.append(attrs[name])


def test_every_img_src_exists_and_nothing_is_remote(report_page):
    page = report_page
    parser = _Images()
    parser.feed(page.read_text())
    # 1 cost chart + per cell (3) a curves figure and 9 gallery pictures + the winner's 9 again
    assert len(parser.srcs) == 1 + 3 * (1 + 9) + 9
    for src in parser.srcs:
        assert (page.parent / src).is_file(), src
    assert not parser.remote
    text = page.read_text()
    assert "crack" in text and "scratch" in text  # the per-defect tables
    assert "<b>0.950 [0.90, 0.99]</b>" in text
    assert "<script" not in text  # a static page: the first screen needs no script
    # the answer before the details: summary, heat table, chart, winner's gallery, then the leaderboard
    order = [text.index(m) for m in ("id='best-per-dataset'", "id='heat-table'", "id='speed-quality'",
                                     "<details open class='winner-gallery'", "<h2>Leaderboard</h2>", "<h2>Cells</h2>")]
    assert order == sorted(order)
    assert text.count("<details open") == 1  # only the winner's gallery; every cell stays folded


_CHECK = """<script>
// Load every picture the page links through a fresh Image (independent of lazy
// loading and closed <details>); report how many failed to load or decode.
window.addEventListener('load', async () => {
  const srcs = Array.from(document.images).map(i => i.src);
  const ok = await Promise.all(srcs.map(src => new Promise(done => {
    const probe = new Image();
    probe.onload = () => done(probe.naturalWidth > 0);
    probe.onerror = () => done(false);
    probe.src = src;
  })));
  const bad = srcs.filter((_, k) => !ok[k]);
  const p = document.createElement('pre');
  p.textContent = 'IMAGES ' + srcs.length + ' BROKEN [' + bad.join(',') + ']';
  document.body.appendChild(p);
});
</script></body>"""


_GEOMETRY = """<script>
// Where the first screen's parts are before anything scrolls, as JSON.
window.addEventListener('load', () => {
  const rect = sel => { const e = document.querySelector(sel);
    if (!e) return null; const r = e.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const winner = document.querySelector('details.winner-gallery');
  const out = {width: window.innerWidth, height: window.innerHeight,
    summary: rect('#best-per-dataset'), heat: rect('#heat-table'), chart: rect('#speed-quality img'),
    winner: rect('details.winner-gallery'), winner_open: winner ? winner.open : null,
    winner_shown: winner ? Array.from(winner.querySelectorAll('img')).filter(i => i.getClientRects().length).length : 0};
  const p = document.createElement('pre');
  p.textContent = 'GEOMETRY ' + JSON.stringify(out) + ' END';
  document.body.appendChild(p);
});
</script></body>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed (Debian: apt-get install chromium; `make test` does it where it can)")
def test_report_renders_in_headless_chromium(report_page):
    page = report_page
    n_images = page.read_text().count("<img ")
    # A copy with a checker script beside the page (same relative paths); the report
    # itself has no script at all.
    check = page.with_name("check.html")
    check.write_text(page.read_text().replace("</body>", _CHECK))
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000", "--dump-dom", check.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r"IMAGES (\d+) BROKEN \[(.*?)\]", proc.stdout)
    assert match, proc.stderr[-2000:]
    assert int(match.group(1)) == n_images and match.group(2) == ""
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Failed to load resource" in line]
    assert not console, console


@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed (Debian: apt-get install chromium; `make test` does it where it can)")
def test_first_screen_holds_the_answer_at_1280x800(report_page):
    page = report_page
    check = page.with_name("geometry.html")
    check.write_text(page.read_text().replace("</body>", _GEOMETRY))
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,800",
         "--virtual-time-budget=10000", "--dump-dom", check.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r"GEOMETRY (\{.*?\}) END", proc.stdout)  # the JSON, not the script's own text
    assert match, proc.stderr[-2000:]
    geometry = json.loads(match.group(1))
    assert geometry["width"] == 1280 and 0 < geometry["height"] <= 800, geometry
    screen = geometry["height"]
    for part in ("summary", "heat", "chart"):
        box = geometry[part]
        assert box is not None, part
        assert 0 <= box["top"] < screen and box["bottom"] <= screen, (part, box, screen)  # wholly on the first screen
        assert box["right"] <= geometry["width"], (part, box)  # and not off to the side
    assert geometry["summary"]["bottom"] <= min(geometry["heat"]["top"], geometry["chart"]["top"])
    # the winner's gallery comes right after, open, its pictures laid out
    assert geometry["winner_open"] is True and geometry["winner_shown"] == 9
    assert geometry["winner"]["top"] >= max(geometry["heat"]["bottom"], geometry["chart"]["bottom"])
