"""The public API: every name in `yolactedge.__all__` is the same object whatever was imported before it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import yolactedge

FIRST_IMPORTS = ["yolactedge.runtime", "yolactedge.visualize", "yolactedge.agreement", "yolactedge.postprocessing",
                 "yolactedge.evaluate", "yolactedge.predict", "yolactedge.cli"]

PROBE = """
import importlib, json, sys, types
for module in sys.argv[1:]:
    importlib.import_module(module)
import yolactedge
report = {}
for name in yolactedge.__all__:
    first = getattr(yolactedge, name)
    for module in sys.argv[1:]:
        importlib.import_module(module)
    again = getattr(yolactedge, name)
    report[name] = [isinstance(first, types.ModuleType), first is again, getattr(first, "__module__", None)]
print(json.dumps(report))
"""


def _probe(imports: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *imports], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("imports", [[], *([m] for m in FIRST_IMPORTS), list(reversed(FIRST_IMPORTS))])
def test_public_names_do_not_depend_on_import_order(imports):
    report = _probe(imports)
    assert set(report) == set(yolactedge.__all__)
    for name, (is_module, stable, _) in report.items():
        assert not is_module, f"yolactedge.{name} is a module after importing {imports}"
        assert stable, f"yolactedge.{name} changed after importing {imports}"


def test_postprocess_is_callable_twice_after_importing_its_users():
    import yolactedge.agreement  # noqa: F401  (imports the post-processing package)
    import yolactedge.runtime  # noqa: F401

    for _ in range(2):
        assert callable(yolactedge.postprocess)
        assert yolactedge.postprocess.__name__ == "postprocess"


def test_no_public_name_is_also_a_submodule():
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(yolactedge.__path__)}
    assert not submodules & set(yolactedge.__all__)


def test_version_comes_from_the_installed_metadata():
    from importlib.metadata import version

    assert yolactedge.__version__ == version("yolactedge")


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        yolactedge.nope  # noqa: B018
    assert "Detector" in dir(yolactedge)
