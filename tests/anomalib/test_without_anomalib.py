"""Without the `anomalib` extra the plugin still loads: its models are listed as
unavailable with the install hint, and running one is a one-line error. Simulated
without uninstalling: an import hook in the subprocess refuses anomalib and lightning."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from testkit import adbench, plugin_env

HINT = "pip install 'iadbench[anomalib]'"

SHIM = textwrap.dedent('''
    import sys

    class _NotInstalled:
        """Behaves as if anomalib and lightning were not installed."""

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("anomalib", "lightning"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
''')


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)  # imported at start-up from PYTHONPATH
    return plugin_env(shim, COLUMNS="400", IADBENCH_CACHE=str(tmp_path / "cache"))


def test_the_shim_hides_anomalib(env, tmp_path):
    done = subprocess.run([sys.executable, "-c", "import anomalib"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "No module named 'anomalib'" in done.stderr


def test_models_are_listed_unavailable_with_the_install_hint(env, tmp_path):
    done = adbench("list", "detectors", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "anomalib." in line]
    assert any("anomalib.padim" in line for line in rows) and len(rows) > 20
    assert all("anomalib is not installed; pip install 'iadbench" in line for line in rows), rows[:3]
    plugins = adbench("plugins", env=env, cwd=tmp_path)
    assert "broken" not in plugins.stdout and plugins.returncode == 0


def test_running_an_anomalib_model_is_a_one_line_error(env, tmp_path):
    done = adbench("run", "-d", "anomalib.padim", "--run-dir", str(tmp_path / "run"), env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "anomalib.padim' is unavailable: anomalib is not installed; pip install 'iadbench" in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_hint_names_the_extra(env, tmp_path):
    listed = adbench("list", "detectors", env=env, cwd=tmp_path)
    ran = adbench("run", "-d", "anomalib.padim", "--run-dir", str(tmp_path / "run"), env=env, cwd=tmp_path)
    assert HINT in listed.stdout and HINT in ran.stderr


def test_with_params_the_factory_refuses_too(env, tmp_path):
    code = (
        "from iadbench.plugins import get_registry; from iadbench.errors import InputError\n"
        "spec = get_registry().detector('anomalib.padim')\n"
        "assert spec.preload == ()\n"
        "try:\n    spec.factory(input_size=128)\nexcept InputError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert HINT in done.stdout
