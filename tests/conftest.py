"""Test-wide settings: offscreen Qt and the shared-data helper on the import path.

Tests that time-sensitive torch work depends on set their own thread count (usually 1, as the
golden fixtures were produced with one thread)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
