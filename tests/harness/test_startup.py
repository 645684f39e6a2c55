"""Start-up cost of the CLI (issue #29): the commands that only look (help, listings,
`plugins`, `data check`) import none of the heavy libraries, and specs that name
their callables by reference ("package.module:attr") load them on first use only,
with a broken reference reported as a broken plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iadbench.errors import PluginError
from iadbench.plugins import load_references, load_registry
from testkit import adbench, make_plugin_site, plugin_env

HEAVY = ("torch", "sklearn", "scipy", "pandas", "matplotlib", "onnxruntime", "anomalib", "ray")

# Runs each argv (a JSON list of lists) through the real main() in one fresh interpreter
# and prints, per command, its exit code and the heavy modules it was the first to load,
# with the iadbench frame that imported each (a meta-path hook sees the first import).
WRAPPER = """
import json, sys, traceback
HEAVY = __HEAVY__

class Spy:
    first = {}
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in self.first:
            frames = [f for f in traceback.extract_stack() if "iadbench" in f.filename and "importlib" not in f.filename]
            self.first[top] = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        return None

spy = Spy()
sys.meta_path.insert(0, spy)
from iadbench.cli import main

for argv in json.loads(sys.argv[1]):
    before = set(spy.first)
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    loaded = {m: spy.first[m] for m in spy.first if m not in before and m in sys.modules}
    print("RESULT " + json.dumps({"argv": argv, "code": code, "heavy": loaded}), flush=True)
"""


def run_commands(commands: list[list[str]], cwd: Path, heavy: tuple[str, ...] = HEAVY) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER.replace("__HEAVY__", repr(heavy)), json.dumps(commands)],
        env=plugin_env(COLUMNS="200"), cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == len(commands), proc.stderr[-2000:]
    return results


def every_help() -> list[list[str]]:
    """``<command> --help`` for every command and sub-command on the app, built-in or a plugin's."""
    from iadbench.cli import _load_commands, app

    _load_commands()
    found = []
    for info in app.registered_commands:
        found.append([info.name or info.callback.__name__.rstrip("_").replace("_", "-"), "--help"])
    for group in app.registered_groups:
        found.append([group.name, "--help"])
        for info in group.typer_instance.registered_commands:
            found.append([group.name, info.name or info.callback.__name__.replace("_", "-"), "--help"])
    return found


def mvtec_folder(root: Path) -> Path:
    """A small MVTec-like category: 3 good train, 2 good test, 2 defective with masks."""
    img = np.full((24, 32, 3), 120, np.uint8)
    for part, n in (("train/good", 3), ("test/good", 2), ("test/crack", 2)):
        (root / part).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(img).save(root / part / f"{i:03d}.png")
    (root / "ground_truth/crack").mkdir(parents=True)
    mask = np.zeros((24, 32), np.uint8)
    mask[4:10, 4:10] = 255
    for i in range(2):
        Image.fromarray(mask).save(root / "ground_truth/crack" / f"{i:03d}_mask.png")
    return root


def test_looking_commands_import_no_heavy_library(tmp_path):
    looks = [["--help"], ["list", "detectors"], ["list", "datasets"], ["list", "metrics"], ["list", "executors"],
             ["plugins"], ["data", "check", str(mvtec_folder(tmp_path / "parts"))]]
    helps = every_help()
    assert ["run", "--help"] in helps and ["data", "check", "--help"] in helps  # the discovery found them
    results = run_commands(looks + helps, tmp_path)
    for result in results:
        assert result["code"] == 0, f"adbench {' '.join(result['argv'])} exited {result['code']}"
    offenders = {" ".join(r["argv"]): r["heavy"] for r in results if r["heavy"]}
    assert not offenders, f"heavy imports (module: first importing line) by command: {offenders}"


def test_help_and_listings_import_neither_numpy_nor_pil(tmp_path):
    """The first commands a new user types pay for no array or image library: dataset
    plugins and the core's types import them where images are read."""
    looks = [["--help"], ["list", "detectors"], ["list", "datasets"], ["plugins"], ["run", "--help"]]
    results = run_commands(looks, tmp_path, heavy=("numpy", "PIL"))
    assert all(r["code"] == 0 for r in results)
    offenders = {" ".join(r["argv"]): r["heavy"] for r in results if r["heavy"]}
    assert not offenders, f"numpy or PIL imported (module: first importing line) by command: {offenders}"


def test_api_is_cheap_and_keeps_its_heavy_names():
    code = ("import sys\nfrom iadbench.api import DetectorSpec, MetricSpec, hookimpl\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "from iadbench.api import Detector, FitContext\n"
            "print(Detector.__module__, FitContext.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.splitlines() == ["[]", "iadbench.detector iadbench.detector"]


LAZY_PLUGIN = """
    from iadbench.api import DetectorSpec, MetricSpec, hookimpl

    @hookimpl
    def register_detectors(register):
        register(DetectorSpec(name="{name}.det", factory="{factory}"))

    @hookimpl
    def register_metrics(register):
        register(MetricSpec("{name}_metric", "{name}_impl:score"))
"""

IMPL = """
    IMPORTED = True

    class Det:
        def __init__(self, input_size: int = 32, sigma: float = 2.0):
            pass

    def score(data):
        return 1.0
"""


def lazy_site(tmp_path: Path, name: str, factory: str, impl: str | None = IMPL) -> Path:
    site = make_plugin_site(tmp_path, name, LAZY_PLUGIN.format(name=name, factory=factory))
    if impl is not None:
        import textwrap

        (site / f"{name}_impl.py").write_text(textwrap.dedent(impl))
    return site


def test_a_reference_loads_on_first_use_with_params_from_its_signature(tmp_path, use_sites, monkeypatch):
    use_sites(lazy_site(tmp_path, "lazyok", "lazyok_impl:Det"))
    monkeypatch.setenv("IADBENCH_PLUGINS", "lazyok")
    registry = load_registry()
    assert registry.plugins["lazyok"].status == "ok"
    assert "lazyok_impl" not in sys.modules  # registered, listed, not imported
    spec = registry.detector("lazyok.det")
    assert spec.preload == ("lazyok_impl",)  # the forkserver imports it once for every cell
    assert spec.params == {"input_size": 32, "sigma": 2.0}
    assert sys.modules["lazyok_impl"].IMPORTED and spec.factory is sys.modules["lazyok_impl"].Det
    assert registry.metric("lazyok_metric").fn(None) == 1.0


def test_a_reference_to_a_missing_module_breaks_its_plugin_in_one_line(tmp_path, example_site, use_sites, monkeypatch):
    site = lazy_site(tmp_path, "lazygone", "lazygone_nowhere.detector:Det", impl=None)
    use_sites(site, example_site)
    monkeypatch.setenv("IADBENCH_PLUGINS", "lazygone,example")
    with pytest.warns(UserWarning, match="lazygone"):
        registry = load_registry()
    info = registry.plugins["lazygone"]
    assert info.status == "broken" and "\n" not in info.error
    assert "lazygone.det" in info.error and "'lazygone_nowhere.detector:Det'" in info.error
    assert "no module named 'lazygone_nowhere.detector'" in info.error
    assert "lazygone.det" not in registry.detectors and "example.median_distance" in registry.detectors
    # ... and `adbench plugins` shows it so, the CLI alive
    proc = adbench("plugins", env=plugin_env(site, allow="lazygone", COLUMNS="300"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "lazygone" in line)
    assert "broken" in row and "no module named 'lazygone_nowhere.detector'" in row


def test_a_reference_that_fails_to_import_is_an_error_on_use_and_under_check(tmp_path, use_sites, monkeypatch):
    # The module exists (so listing is fine) but its attribute does not.
    use_sites(lazy_site(tmp_path, "lazybad", "lazybad_impl:NoSuchClass"))
    monkeypatch.setenv("IADBENCH_PLUGINS", "lazybad")
    registry = load_registry()
    assert registry.plugins["lazybad"].status == "ok"
    spec = registry.detector("lazybad.det")
    with pytest.raises(PluginError) as caught:
        spec.params  # noqa: B018
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("plugin 'lazybad': detector 'lazybad.det': factory 'lazybad_impl:NoSuchClass' does not load")
    assert "AttributeError" in message
    load_references(registry)  # what `adbench plugins --check` runs
    assert registry.plugins["lazybad"].status == "broken" and "NoSuchClass" in registry.plugins["lazybad"].error
    assert "lazybad.det" not in registry.detectors and "lazybad_metric" not in registry.metrics


def test_a_reference_whose_params_disagree_is_reported_on_first_use(tmp_path, use_sites, monkeypatch):
    use_sites(make_plugin_site(tmp_path, "lazyparams", """
        from iadbench.api import DetectorSpec, hookimpl

        @hookimpl
        def register_detectors(register):
            register(DetectorSpec(name="lp", factory="lazyparams_impl:Det", params={"sigma": 3.0}))
    """))
    (tmp_path / "site_lazyparams" / "lazyparams_impl.py").write_text(
        "class Det:\n    def __init__(self, sigma: float = 2.0):\n        pass\n")
    monkeypatch.setenv("IADBENCH_PLUGINS", "lazyparams")
    spec = load_registry().detector("lp")
    with pytest.raises(PluginError, match=r"^plugin 'lazyparams': detector 'lp': param 'sigma' defaults to 3.0"):
        spec.params  # noqa: B018
    with pytest.raises(PluginError):  # every time, not only the first
        spec.params  # noqa: B018


def test_a_malformed_reference_is_refused_at_registration():
    from iadbench.types import DetectorSpec

    with pytest.raises(PluginError, match="'padim.Padim' is not a reference of the form 'package.module:attribute'"):
        DetectorSpec(name="x", factory="padim.Padim")


def test_built_in_detectors_are_references_preloaded_by_the_forkserver(monkeypatch):
    monkeypatch.delenv("IADBENCH_PLUGINS", raising=False)
    monkeypatch.delenv("IADBENCH_BLOCK_PLUGINS", raising=False)
    registry = load_registry()
    for name in ("padim", "patchcore", "pixel_gaussian", "feature_ae", "conv_ae", "efficientad"):
        spec = registry.detector(name)
        module = spec.factory.__module__
        assert module in spec.preload, (name, spec.preload)
        assert spec.factory.name == name  # the name registered is the one the detector calls itself


def test_the_cli_default_dataset_is_the_runners():
    from iadbench.cli.run import DEFAULT_DATASET
    from iadbench.runner.plan import DEFAULT_DATASET as RUNNER_DEFAULT

    assert DEFAULT_DATASET == RUNNER_DEFAULT
