"""The plugin system: discovery by entry point, broken and misspelt plugins, strict
mode, block/allow lists, and plugins adding CLI commands."""

from __future__ import annotations

import pytest

from iadbench.errors import PluginError
from iadbench.plugins import get_registry, load_registry
from testkit import adbench, make_plugin_site, plugin_env


def test_third_party_plugin_adds_detector_and_dataset(example_site, use_sites):
    use_sites(example_site)
    registry = get_registry()
    info = registry.plugins["example"]
    assert info.status == "ok" and info.version == "0.1.0"
    assert registry.detector("example.median_distance").plugin == "example"
    assert registry.dataset("example.blobs").plugin == "example"
    assert sorted(info.provides) == ["example.blobs", "example.median_distance"]


def test_broken_plugin_is_a_warning_not_a_dead_registry(tmp_path, example_site, use_sites, monkeypatch):
    site = make_plugin_site(tmp_path, "brokenplug", "raise ImportError('missing libfoo')\n")
    use_sites(site, example_site)
    monkeypatch.setenv("IADBENCH_PLUGINS", "brokenplug,example")
    with pytest.warns(UserWarning, match="brokenplug"):
        registry = load_registry()
    assert registry.plugins["brokenplug"].status == "broken"
    assert "missing libfoo" in registry.plugins["brokenplug"].error
    assert "example.median_distance" in registry.detectors  # others still load


def test_strict_mode_makes_a_broken_plugin_fatal(tmp_path, use_sites, monkeypatch):
    use_sites(make_plugin_site(tmp_path, "brokenplug", "raise ImportError('missing libfoo')\n"))
    monkeypatch.setenv("IADBENCH_PLUGINS", "brokenplug")
    monkeypatch.setenv("IADBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="brokenplug.*missing libfoo"):
        load_registry()


def test_misspelt_hookimpl_is_caught(tmp_path, use_sites, monkeypatch):
    monkeypatch.setenv("IADBENCH_PLUGINS", "typoplug")
    source = """
        from iadbench.api import hookimpl

        @hookimpl
        def register_detector(register):  # missing the trailing s
            pass
    """
    use_sites(make_plugin_site(tmp_path, "typoplug", source))
    with pytest.warns(UserWarning, match="typoplug"):
        registry = load_registry()
    assert registry.plugins["typoplug"].status == "broken"
    assert "register_detector" in registry.plugins["typoplug"].error


def test_plugin_registering_a_taken_name_or_wrong_type_is_broken(tmp_path, example_site, use_sites, monkeypatch):
    monkeypatch.setenv("IADBENCH_PLUGINS", "example,zdup,zwrong")
    dup = """
        from iadbench.api import hookimpl, DetectorSpec

        @hookimpl
        def register_detectors(register):
            register(DetectorSpec(name="example.median_distance", factory=dict))
    """
    wrong = """
        from iadbench.api import hookimpl, DatasetSpec

        @hookimpl
        def register_detectors(register):
            register(DatasetSpec(name="oops", factory=dict))
    """
    use_sites(example_site, make_plugin_site(tmp_path, "zdup", dup), make_plugin_site(tmp_path, "zwrong", wrong))
    with pytest.warns(UserWarning):
        registry = load_registry()
    assert registry.plugins["zdup"].status == "broken"
    assert "already registered by plugin 'example'" in registry.plugins["zdup"].error
    assert registry.plugins["zwrong"].status == "broken"
    assert "expected DetectorSpec" in registry.plugins["zwrong"].error
    assert registry.detector("example.median_distance").plugin == "example"


def test_block_and_allow_lists(example_site, use_sites, monkeypatch):
    use_sites(example_site)
    monkeypatch.setenv("IADBENCH_BLOCK_PLUGINS", "example")
    registry = load_registry()
    assert registry.plugins["example"].status == "blocked"
    assert "example.median_distance" not in registry.detectors

    monkeypatch.delenv("IADBENCH_BLOCK_PLUGINS")
    monkeypatch.setenv("IADBENCH_PLUGINS", "example")
    registry = load_registry()
    # the core's own plugin (the local executor) is outside the lists: a run always has one
    assert [n for n, p in registry.plugins.items() if p.status == "ok"] == ["core", "example"]
    assert list(registry.executors) == ["local"]


def test_plugin_metric_is_computed_by_the_harness(tmp_path, use_sites, monkeypatch):
    monkeypatch.setenv("IADBENCH_PLUGINS", "gapmetric")
    source = """
        import numpy as np
        from iadbench.api import hookimpl, MetricSpec

        @hookimpl
        def register_metrics(register):
            register(MetricSpec(name="mean_score_gap", fn=lambda d: float(
                d.scores[d.labels == 1].mean() - d.scores[d.labels == 0].mean())))
    """
    use_sites(make_plugin_site(tmp_path, "gapmetric", source))
    import numpy as np

    from iadbench.metrics import compute_metrics
    from iadbench.types import EvalData

    registry = load_registry()
    spec = registry.metric("mean_score_gap")
    data = EvalData(np.array([0, 0, 1]), np.array([0.1, 0.3, 0.9]), np.zeros((3, 2, 2), np.float32), None, 0.5, ["good", "good", "x"])
    values, _ = compute_metrics(data, {"mean_score_gap": spec})
    assert values["mean_score_gap"] == pytest.approx(0.7)


def test_plugin_command_and_broken_plugin_in_cli(tmp_path, example_site):
    cmd = """
        import typer
        from iadbench.api import hookimpl

        @hookimpl
        def register_commands(app):
            @app.command("hello")
            def hello(name: str):
                print(f"hello {name}")
    """
    cmd_site = make_plugin_site(tmp_path, "hellocmd", cmd)
    broken = make_plugin_site(tmp_path, "brokenplug", "raise ImportError('missing libfoo')\n")
    env = plugin_env(cmd_site, broken, example_site, allow="hellocmd,brokenplug,example")
    out = adbench("hello", "world", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "hello world" in out.stdout

    listing = adbench("plugins", env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "brokenplug" in listing.stdout and "broken" in listing.stdout and "missing libfoo" in listing.stdout

    strict = adbench("plugins", env={**env, "IADBENCH_STRICT_PLUGINS": "1"}, cwd=tmp_path)
    assert strict.returncode != 0
    assert "brokenplug" in strict.stderr


@pytest.mark.slow
def test_a_third_party_executor_runs_a_grid(tmp_path, example_site, use_sites, monkeypatch):
    """An executor plugin registers through ``register_executors`` and ``--executor``
    picks it, without the core naming it; a bad name or address is a one-line error."""
    source = """
        from iadbench.api import hookimpl
        from iadbench.executors import ExecutorSpec, LocalProcessExecutor

        class Logged:
            def __init__(self, options):
                self.inner = LocalProcessExecutor(workers=1, timeout_s=options.timeout_s, preload=options.preload)
                self.threads, self.workers = self.inner.threads, 1

            def submit(self, task):
                task.cell_dir.mkdir(parents=True, exist_ok=True)
                (task.cell_dir / "submitted-by-logged").write_text(task.cell.key)
                return self.inner.submit(task)

            def shutdown(self, cancel=False):
                self.inner.shutdown(cancel)

        @hookimpl
        def register_executors(register):
            register(ExecutorSpec("logged", Logged, description="the local executor, leaving a mark"))
    """
    site = make_plugin_site(tmp_path, "loggedexec", source)
    env = plugin_env(site, example_site, allow="loggedexec,example,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))
    grid = ["run", "-d", "example.median_distance", "--dataset", "example.blobs", "-c", "dark",
            "--dataset-path", f"example.blobs={tmp_path / 'blobs'}"]
    out = adbench(*grid, "--executor", "logged", "--run-dir", str(tmp_path / "run"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    marks = list((tmp_path / "run" / "cells").glob("*/submitted-by-logged"))
    assert len(marks) == 1

    # the same plugin in this process: listed beside the core's local executor, and bad
    # names or addresses are one-line plan-time errors
    from iadbench.errors import InputError
    from iadbench.runner.plan import check_executor

    use_sites(site, example_site)
    monkeypatch.setenv("IADBENCH_PLUGINS", "loggedexec,example,metrics")
    registry = get_registry()
    assert sorted(registry.executors) == ["local", "logged"] and registry.executors["local"].plugin == "core"
    with pytest.raises(InputError, match=r"^unknown executor 'dask' \(known: local, logged\)$"):
        check_executor("dask", None, registry=registry)
    with pytest.raises(InputError, match=r"needs an executor that joins a cluster \(none\), not 'logged'"):
        check_executor("logged", "h:1", registry=registry)


def test_register_hooks_go_through_pluggy_in_its_call_order(tmp_path, use_sites, monkeypatch):
    """Hooks are called through pluggy (its monitoring sees every call), one plugin at a
    time, honouring pluggy's ``tryfirst``/``trylast``: a name taken by two plugins goes
    to the ``tryfirst`` one although it registered later, and the other is broken."""
    first = make_plugin_site(tmp_path, "aaafirst", """
        from iadbench.api import DetectorSpec, hookimpl

        @hookimpl(trylast=True)
        def register_detectors(register):
            register(DetectorSpec("dup.det", factory=dict, params={}))
    """)
    second = make_plugin_site(tmp_path, "zzzsecond", """
        from iadbench.api import DetectorSpec, hookimpl

        @hookimpl(tryfirst=True)
        def register_detectors(register):
            register(DetectorSpec("dup.det", factory=dict, params={}))
    """)
    use_sites(first, second)
    monkeypatch.setenv("IADBENCH_PLUGINS", "aaafirst,zzzsecond")
    calls = []
    import pluggy

    real = pluggy.PluginManager.subset_hook_caller

    def spy(self, name, remove_plugins):
        caller = real(self, name, remove_plugins)
        self.add_hookcall_monitoring(lambda hook_name, impls, kwargs: calls.append((hook_name, [i.plugin_name for i in impls])),
                                     lambda *a: None)
        return caller

    monkeypatch.setattr(pluggy.PluginManager, "subset_hook_caller", spy)
    with pytest.warns(UserWarning, match="aaafirst"):
        registry = load_registry()
    assert registry.detectors["dup.det"].plugin == "zzzsecond"
    assert registry.plugins["aaafirst"].status == "broken"
    assert ("register_detectors", ["zzzsecond"]) in calls and ("register_detectors", ["aaafirst"]) in calls
