"""The service's page in headless Chromium: a bottle test image is scored through the
real page script, the verdict and overlay appear, the operator's feedback button stores
the upload, no console errors, a screenshot."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="fastapi not installed (pip install 'iadbench[deploy]')")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn not installed (pip install 'iadbench[deploy]')")

from fastapi.responses import HTMLResponse, Response  # noqa: E402

from iadbench.deploy.runtime import EagerRuntime  # noqa: E402
from iadbench.deploy.server import PAGE, create_app  # noqa: E402
from iadbench.line.feedback import FeedbackStore  # noqa: E402
from iadbench.model import FittedModel, Model  # noqa: E402


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# Appended to the page in a test-only copy: picks the bottle image as a user would
# (a File handed to the page's own score()), then reports what the page shows.
_DRIVE = """<script>
(async () => {
  const blob = await (await fetch("/test-image")).blob();
  await score(new File([blob], "bottle.png", { type: "image/png" }));
  const img = document.getElementById("overlay");
  if (!img.complete) await new Promise((ok) => { img.onload = ok; img.onerror = ok; });
  const button = [...document.querySelectorAll("#feedback button")].find((b) => !b.disabled);
  button.click();
  const note = () => document.querySelector("#feedback .fbnote");
  while (!note() || note().textContent === "…") await new Promise((ok) => setTimeout(ok, 50));
  document.body.insertAdjacentHTML("beforeend", `<pre id="check">VERDICT ${document.getElementById("verdict").textContent} ` +
    `OVERLAY ${img.naturalWidth} ROWS ${document.getElementById("history").tBodies[0].rows.length} ` +
    `BUTTONS ${document.querySelectorAll("#history button.fb").length} FEEDBACK ${button.dataset.label} ${note().textContent}</pre>`);
})();
</script></body>"""


@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_page_scores_an_upload_in_headless_chromium(padim, mvtec_root, tmp_path):
    bottle = sorted((mvtec_root / "bottle" / "test" / "broken_large").glob("*.png"))[0]
    model = FittedModel(directory=tmp_path, detector=padim, input_size=padim.input_size, threshold=1.0,
                        threshold_rule="test", display_range=(0.0, 3.0), info={})
    store = FeedbackStore(tmp_path)
    app = create_app(Model.of(model, EagerRuntime(padim.predict, padim.input_size)), feedback=store)
    app.add_api_route("/test-page", lambda: HTMLResponse(PAGE.read_text().replace("</body>", _DRIVE)))
    app.add_api_route("/test-image", lambda: Response(bottle.read_bytes(), media_type="image/png"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/test-page"
        base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                "--virtual-time-budget=20000", "--window-size=1000,800"]
        shot = tmp_path / "page.png"
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    finally:
        server.should_exit = True
        thread.join(10)
    match = re.search(r"VERDICT (\w+) OVERLAY (\d+) ROWS (\d+) BUTTONS (\d+) FEEDBACK (\w+) ([^<]*)", dom.stdout)
    assert match, dom.stderr[-2000:]
    assert match.group(1) in ("good", "defective") and int(match.group(2)) == 900 and match.group(3) == "1"
    assert match.group(4) == "2"  # the history row's two buttons
    # the enabled button is the one that contradicts the verdict; the upload is stored once
    # (--dump-dom and --screenshot each load the page: two entries, the same bytes)
    label = {"good": "missed_defect", "defective": "false_alarm"}[match.group(1)]
    assert match.group(5) == label and match.group(6).startswith("saved"), match.group(0)
    entries = store.entries()
    assert entries and {e["label"] for e in entries} == {label}
    assert all((store.folder / e["image"]).read_bytes() == bottle.read_bytes() for e in entries)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Failed to load resource" in line]
    assert not console, console
    assert shot.is_file() and shot.stat().st_size > 1000
