"""One error root: every exception class the project defines derives from Yolov7TrackError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from yolov7_track.errors import Yolov7TrackError

PACKAGES = ("app", "detector", "tracker", "training")
# modules that need an optional extra or a display to import are still scanned when importable
SKIP = {"app.gui.__main__"}


def _project_modules():
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if info.name in SKIP:
                continue
            try:
                yield importlib.import_module(info.name)
            except ImportError:  # an optional extra that is not installed
                continue


def _project_exceptions():
    seen = {}
    for module in _project_modules():
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.split(".")[0] in PACKAGES):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return seen


def test_every_project_error_derives_from_the_root():
    errors = _project_exceptions()
    assert len(errors) > 30
    outside = sorted(name for name, cls in errors.items() if not issubclass(cls, Yolov7TrackError))
    assert outside == []


@pytest.mark.parametrize("name", ["tracker.TrackerError", "detector.DetectorError", "app.sources.SourceError"])
def test_package_roots_keep_their_names(name):
    module, _, cls = name.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), cls), Yolov7TrackError)
