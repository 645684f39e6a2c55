"""The example third-party plugin, installed by pip, passes the conformance kit the
way a plugin author would run it: by the registered name."""

from __future__ import annotations

from iadbench.plugins import get_registry
from iadbench.testing import check_detector


def test_example_plugin_detector_conforms(example_site, use_sites):
    use_sites(example_site)
    spec = get_registry().detector("example.median_distance")
    assert spec.params == {"input_size": 32, "fit_sleep": 0.0, "crash": ""}  # from its signature
    report = check_detector("example.median_distance")
    assert report.params == spec.params and report.warnings == []
    assert "save/load gives the same predictions" in report.passed
