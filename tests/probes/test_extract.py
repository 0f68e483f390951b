"""Extraction helpers that need no model: TensorFlow's import with the collector paused."""

from __future__ import annotations

import gc
import sys

from autotransfer.probes.extract import import_tensorflow


def test_tensorflow_is_imported_with_the_collector_paused_then_frozen(tmp_path, monkeypatch):
    """The modules' import runs with gc disabled (it made 360,000 objects for the collector to
    walk), the collector is on again afterwards and what exists is frozen."""
    (tmp_path / "heavy_module_for_test.py").write_text(
        "import gc\nENABLED_DURING_IMPORT = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_module_for_test", raising=False)
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    monkeypatch.setattr("autotransfer._process.freeze_after_import", True)  # the console script
    assert gc.isenabled()
    import_tensorflow(("heavy_module_for_test",))
    assert sys.modules["heavy_module_for_test"].ENABLED_DURING_IMPORT is False
    assert gc.isenabled() and frozen == [1]
    import_tensorflow(("heavy_module_for_test",))  # already imported: nothing to do
    assert frozen == [1]


def test_a_library_callers_heap_is_never_frozen(tmp_path, monkeypatch):
    """Through the Python API (no console script) the import still pauses the collector, but
    nothing is frozen: the caller's own objects stay collectable."""
    (tmp_path / "light_module_for_test.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "light_module_for_test", raising=False)
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    monkeypatch.setattr("autotransfer._process.freeze_after_import", False)
    import_tensorflow(("light_module_for_test",))
    assert "light_module_for_test" in sys.modules and frozen == [] and gc.isenabled()
