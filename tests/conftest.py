"""Test-wide settings: offscreen Qt and the shared-data helper on the import path.

Tests that time-sensitive torch work depends on set their own thread count (usually 1, as the
golden fixtures were produced with one thread)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The GUI saves each run's events (and recordings) under ~/Videos/yolov7-track by default;
# tests keep them in a temporary folder of their own instead of the user's home.
os.environ["YOLOV7_TRACK_OUTPUT_DIR"] = tempfile.mkdtemp(prefix="yolov7-track-test-output-")


def pytest_collection_modifyitems(session, config, items):
    """Run the ONNX Runtime / OpenVINO tests (tests/test_export.py) last.

    After all of them have run in this process, the GUI test that delivers SIGINT to the
    process (test_gui_main_window::test_ctrl_c...) segfaults; each part of test_export.py
    alone before it does not, and the GUI tests before test_export.py pass. The runtimes' native
    thread pools are the suspects; the cause is not found yet (see the issue notes). Ordering
    keeps the suite honest about both: every test still runs, in one process."""
    items.sort(key=lambda item: item.fspath.basename == "test_export.py")
