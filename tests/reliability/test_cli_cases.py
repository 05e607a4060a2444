"""Issue #11: the hostile new user, as a table. Each row is one way to lose data or get a
traceback that was reproduced against the CLI; the next hostile input is one more row.

A row gives the issue's item, how to build the files and the command line, the exit status, words
the one-line error must contain, and a check that the user's data is still there afterwards.
Rows run the CLI in this process (``app.cli.main``); the cases that need a real process (signals,
a display that Qt would abort on) are the subprocess tests below the table.

The detector is the official-format yolov7-tiny fixture at ``--img-size 160`` (real inference,
junk detections), as in ``test_cli_run.py``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
import torch

from app.cli import main
from app.sinks import read_events
from fault_injection import FullDisk
from shared_data import shared_path

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIP = "vtest_PETS09-S2L1_480x360.avi"
IMG_SIZE = "160"
WHOLE_FRAME_ZONE = {"zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}


@pytest.fixture(scope="module")
def weights() -> str:
    return str(shared_path("fixtures", "yolov7", "yolov7-tiny.official-format.pt"))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _weights_with_metadata(tmp: Path, **changes: object) -> Path:
    """The bundled model with some metadata fields replaced (a hostile or mistaken file)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    source = REPO_ROOT / "assets" / "models" / "yolov7-tiny-traffic.safetensors"
    with safe_open(str(source), "np") as f:
        metadata = dict(f.metadata())
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    fields = json.loads(metadata["yolov7_track"])
    fields.update(changes)
    metadata["yolov7_track"] = json.dumps(fields)
    path = tmp / "hostile.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


def _disk_full_on(name: str) -> Callable[[pytest.MonkeyPatch, Path], None]:
    """ENOSPC on every write to the events file called ``name`` (the others are healthy)."""
    from app import sinks

    def inject(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
        original = sinks.CsvEventSink._write_one

        def write_one(self, event):  # noqa: ANN001
            if self.path.name == name:
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(self, event)

        monkeypatch.setattr(sinks.CsvEventSink, "_write_one", write_one)
    return inject


def _video_disk_full(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """The disk fills up after 20 kB of video: the encoder's writes fail with ENOSPC."""
    from app import video_writer

    def open_output(path: Path, container_options: dict[str, str]):  # noqa: ANN202
        return av.open(FullDisk(path, 20_000), mode="w", format="mp4", container_options=container_options)

    monkeypatch.setattr(video_writer, "_open_output", open_output)


def _display_dies(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """A display that passes the check at start and is gone when the window opens: OpenCV
    aborts its process (the window's child process)."""
    monkeypatch.setattr("app.display.display_problem", lambda **_: None)
    monkeypatch.setenv("DISPLAY", ":87")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def _same_events(a: Path, b: Path) -> None:
    assert read_events(a) and read_events(a) == read_events(b)


# ------------------------------------------------------------------------------ the table
@dataclass
class Run:
    """What a row's ``prepare`` hands back: the command line and files to check afterwards."""

    argv: list[str]
    keep: dict[Path, str] = field(default_factory=dict)  # path -> sha256 that must survive

    def protect(self, *paths: Path) -> Run:
        for path in paths:
            self.keep[path] = _digest(path)
        return self


@dataclass(frozen=True)
class Case:
    id: str
    item: str  # the numbered item ("1", "7", "minor")
    prepare: Callable[[Path, str, Path], Run]  # (tmp folder, weights, input copy) -> Run
    status: int
    words: tuple[str, ...]
    check: Callable[[Path], None] | None = None
    #: a fault to inject (a full disk...) with pytest's monkeypatch, given the tmp folder
    fault: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    #: the run goes on and reports the failure at the end: log lines may precede the error lines
    reported_at_end: bool = False


def _base(video: Path, weights: str, *extra: str) -> list[str]:
    return [str(video), "--weights", weights, "--img-size", IMG_SIZE, "--device", "cpu",
            "--max-frames", "5", "--no-progress", *extra]


def _events_file(tmp: Path, name: str = "events.csv", rows: int = 2) -> Path:
    path = tmp / name
    lines = ["timestamp_s,frame_index,zone,track_id,class_name,direction,dwell_s"]
    lines += [f"{i}.0,{i},road,{i},car,in," for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _foreign_db(tmp: Path) -> Path:
    path = tmp / "other_app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
        conn.executemany("INSERT INTO events (what) VALUES (?)", [(f"row {i}",) for i in range(100)])
    return path


def _hard_link(tmp: Path, target: Path, name: str) -> Path:
    link = tmp / name
    os.link(target, link)
    return link


def _symlink(tmp: Path, target: Path, name: str) -> Path:
    link = tmp / name
    link.symlink_to(target)
    return link


def _a_file(tmp: Path) -> Path:
    path = tmp / "a_file"
    path.write_text("not a folder", encoding="utf-8")
    return path


def _foreign_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def _corrupt_folder(tmp: Path) -> Path:
    folder = tmp / "frames"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i:03d}.jpg").write_bytes(b"\xff\xd8 not a jpeg " + bytes(64))
    return folder


CASES: list[Case] = [
    # 1. outputs that name the input or each other
    Case("output-is-input", "1", lambda t, w, v: Run(_base(v, w, "--output", str(v))).protect(v),
         1, ("--output", "is the input")),
    Case("output-is-input-via-symlink", "1",
         lambda t, w, v: Run(_base(v, w, "--output", str(_symlink(t, v, "link.avi")))).protect(v),
         1, ("is the input",)),
    Case("output-is-input-via-hard-link", "1",
         lambda t, w, v: Run(_base(v, w, "--output", str(_hard_link(t, v, "hard.avi")))).protect(v),
         1, ("is the input",)),
    Case("report-is-input", "1", lambda t, w, v: Run(_base(v, w, "--report", str(v))).protect(v),
         1, ("--report",)),
    Case("report-is-events", "1",
         lambda t, w, v: Run(_base(v, w, "--events", str(_events_file(t, "e.json.csv")),
                                   "--report", str(t / "e.json.csv"))).protect(t / "e.json.csv"),
         1, ("--report",)),
    Case("report-is-output-spelled-differently", "1",
         lambda t, w, v: Run(_base(v, w, "--output", str(t / "out.mp4"), "--report", str(t / "x" / ".." / "out.mp4"))),
         1, ("--report", "out.mp4")),
    Case("events-is-input", "1", lambda t, w, v: Run(_base(v, w, "--events", str(_hard_link(t, v, "in.csv")))).protect(v),
         1, ("--events", "is the input")),
    Case("same-events-twice", "minor",
         lambda t, w, v: Run(_base(v, w, "--events", str(t / "e.csv"), "--events", f"{t}/./e.csv")),
         1, ("--events", "given twice")),
    # 3. existing events files
    Case("rerun-appends-to-events", "3",
         lambda t, w, v: Run(_base(v, w, "--events", str(_events_file(t)))), 0, (),
         check=lambda t: _assert_rows_at_least(t / "events.csv", 2)),
    Case("events-mode-new-refuses-existing", "3",
         lambda t, w, v: Run(_base(v, w, "--events", str(_events_file(t)), "--events-mode", "new")).protect(t / "events.csv"),
         1, ("events.csv",)),
    Case("foreign-events-table-untouched", "3",
         lambda t, w, v: Run(_base(v, w, "--events", str(_foreign_db(t)))).protect(t / "other_app.db"),
         1, ("other_app.db",), check=lambda t: _assert_equal(_foreign_rows(t / "other_app.db"), 100)),
    Case("foreign-events-table-untouched-by-overwrite", "3",
         lambda t, w, v: Run(_base(v, w, "--events", str(_foreign_db(t)), "--events-mode", "overwrite")),
         1, ("other_app.db",), check=lambda t: _assert_equal(_foreign_rows(t / "other_app.db"), 100)),
    # 7. user paths that cannot be written: one line, before the run
    Case("report-folder-cannot-be-created", "7",
         lambda t, w, v: Run(_base(v, w, "--report", str(_a_file(t) / "report.json"))), 1, ("--report", "a_file")),
    Case("output-folder-cannot-be-created", "7",
         lambda t, w, v: Run(_base(v, w, "--output", str(_a_file(t) / "sub" / "out.mp4"))), 1, ("--output", "a_file")),
    Case("events-folder-cannot-be-created", "7",
         lambda t, w, v: Run(_base(v, w, "--events", str(_a_file(t) / "e.csv"))), 1, ("--events", "a_file")),
    Case("output-is-a-folder", "7", lambda t, w, v: Run(_base(v, w, "--output", str(t))), 1, ("--output",)),
    # 9. a folder of corrupt images
    Case("folder-all-corrupt", "9", lambda t, w, v: Run(_base(_corrupt_folder(t), w, "--line", "0,0.5,1,0.5")),
         1, ("frames",)),
    # 2. one failing events file does not starve the others; the failure is reported (exit 1)
    Case("disk-full-on-first-events-file", "2",
         lambda t, w, v: Run(_base(v, w, "--max-frames", "40", "--zones", str(_zone_file(t)),
                                   "--events", str(t / "full.csv"), "--events", str(t / "healthy.csv"),
                                   "--events", str(t / "reference.jsonl"))),
         1, ("events:", "full.csv", "No space left"), fault=_disk_full_on("full.csv"), reported_at_end=True,
         check=lambda t: _same_events(t / "healthy.csv", t / "reference.jsonl")),
    # 5. a full disk under the video: counting goes on, nothing corrupt at the requested path
    Case("disk-full-on-video", "5",
         lambda t, w, v: Run(_base(v, w, "--max-frames", "40", "--zones", str(_zone_file(t)),
                                   "--output", str(t / "out.mp4"), "--events", str(t / "e.jsonl"))),
         1, ("video:", "No space left"), fault=_video_disk_full, reported_at_end=True,
         check=lambda t: (_assert_equal((t / "out.mp4").exists(), False), _assert_rows_at_least(t / "e.jsonl", 1))),
    # 6. sizes that would exhaust memory are refused before allocation
    Case("img-size-flag-65536", "6", lambda t, w, v: Run(_base(v, w, "--img-size", "65536")), 1, ("4096",)),
    Case("img-size-in-weights-100000", "6",
         lambda t, w, v: Run(_base(v, str(_weights_with_metadata(t, img_size=100000)), "--img-size", "160")),
         1, ("hostile.safetensors", "img_size")),
    # 7. malformed metadata: one line naming the file and the field
    Case("malformed-anchors-in-weights", "7",
         lambda t, w, v: Run(_base(v, str(_weights_with_metadata(t, anchors_px=[[1, 2], "x"])))),
         1, ("hostile.safetensors", "anchors_px")),
    Case("negative-img-size-in-weights", "7",
         lambda t, w, v: Run(_base(v, str(_weights_with_metadata(t, img_size=-640)))),
         1, ("hostile.safetensors", "img_size")),
    # 8. a display lost mid-run costs the window, not the run (the window is a child process)
    Case("display-lost-mid-run", "8",
         lambda t, w, v: Run(_base(v, w, "--max-frames", "20", "--show", "--output", str(t / "shown.mp4"))),
         0, (), fault=_display_dies, check=lambda t: _assert_equal(_frame_count(t / "shown.mp4"), 20)),
    # minor: a negative coordinate reaches our own check instead of argparse's
    Case("negative-line-coordinate", "minor", lambda t, w, v: Run(_base(v, w, "--line", "-1,0,5,5")),
         2, ("--line", ">= 0")),
]


def _zone_file(tmp: Path) -> Path:
    path = tmp / "zones.json"
    path.write_text(json.dumps(WHOLE_FRAME_ZONE), encoding="utf-8")
    return path


def _assert_rows_at_least(path: Path, n: int) -> None:
    assert len(read_events(path)) >= n, f"{path} lost its earlier events"


def _assert_equal(a: object, b: object) -> None:
    assert a == b


@pytest.mark.parametrize("case", CASES, ids=[f"item{c.item}-{c.id}" for c in CASES])
def test_hostile_input_loses_nothing(case: Case, weights: str, tmp_path: Path, capsys, monkeypatch) -> None:
    video = tmp_path / CLIP  # a copy: a failure must not be able to destroy the shared clip
    video.write_bytes(shared_path("data", "videos", CLIP).read_bytes())
    run = case.prepare(tmp_path, weights, video)
    if case.fault is not None:
        case.fault(monkeypatch, tmp_path)
    try:
        status = main(run.argv)
    except SystemExit as exc:  # argparse usage errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == case.status, err
    assert "Traceback" not in err
    if case.status != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        if case.reported_at_end:  # logged as it happened, then one line per failed output
            lines = [line for line in lines if line.startswith("yolov7-track: error: ")]
        assert len(lines) == 1, err
        assert lines[0].startswith("yolov7-track: error: ")
        for word in case.words:
            assert word in lines[0], lines[0]
    for path, digest in run.keep.items():
        assert path.exists() and _digest(path) == digest, f"{path} was changed"
    if case.check is not None:
        case.check(tmp_path)


# ------------------------------------------------------------------------------ 11. dependencies
#: import name -> distribution name, for the imports whose names differ.
_DISTRIBUTIONS = {"cv2": "opencv-python", "yaml": "pyyaml", "PyQt6": "pyqt6", "google": "protobuf",
                  "ruamel": "ruamel.yaml"}
#: optional integrations not declared yet (imported only when used, behind future extras); the
#: declared extras (onnx, openvino) are checked against pyproject's optional-dependencies below.
_OPTIONAL = {"paho", "ray", "prometheus_client", "cpuinfo"}


def _third_party_imports(package: str, top_level_only: bool = False) -> set[str]:
    """Top-level names of the third-party modules ``package`` imports (anywhere, or only in
    module-level statements)."""
    import ast

    stdlib = set(sys.stdlib_module_names)
    first_party = {"app", "detector", "tracker", "training", "assets", "yolov7_track"}
    found: set[str] = set()
    for path in (REPO_ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in (tree.body if top_level_only else ast.walk(tree)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top not in first_party and top not in _OPTIONAL:
                    found.add(top)
    return found


def test_every_runtime_import_is_a_runtime_dependency() -> None:
    """Item 11: ``yolov7-track val`` and validation in ``train`` need pycocotools; a plain
    ``pip install`` (no ``[dev]``) got a traceback. Every module the installed program imports
    must come with the install."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    def names(deps):
        return {dep.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for dep in deps}

    runtime = names(project["dependencies"])
    extras = set().union(*(names(deps) for group, deps in project["optional-dependencies"].items()
                           if group != "dev"))
    imported = set().union(*(_third_party_imports(p) for p in ("app", "detector", "tracker", "training")))
    missing = {name for name in imported if _DISTRIBUTIONS.get(name, name).lower() not in runtime | extras}
    assert "pycocotools" in imported and "onnx" in imported
    assert not missing, f"imported but in neither [project] dependencies nor an extra: {sorted(missing)}"
    # an extra's module is imported only inside the functions that use it: the import-time
    # modules of a plain install are all runtime dependencies
    top_level = set().union(*(_third_party_imports(p, top_level_only=True)
                              for p in ("app", "detector", "tracker", "training")))
    lazy_only = {name for name in top_level if _DISTRIBUTIONS.get(name, name).lower() not in runtime}
    assert not lazy_only, f"optional packages imported at module level: {sorted(lazy_only)}"


# ------------------------------------------------------------------------------ subprocesses
def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=REPO_ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_like_ctrl_c(signum: int, weights: str, tmp_path: Path) -> None:
    """Item 4: ``docker stop`` / ``systemctl stop`` (SIGTERM) and a closed terminal (SIGHUP)
    killed the process in 0.03 s: no report, an unplayable MP4, the last SQLite commit lost."""
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps(WHOLE_FRAME_ZONE), encoding="utf-8")
    output, events, report_path = tmp_path / "out.mp4", tmp_path / "events.sqlite", tmp_path / "report.json"
    proc = _cli([str(shared_path("data", "videos", CLIP)), "--weights", weights, "--img-size", IMG_SIZE,
                 "--device", "cpu", "--tracker", "sort", "--zones", str(zones), "--no-progress", "-v",
                 "--output", str(output), "--events", str(events), "--report", str(report_path)])
    deadline = time.monotonic() + 180
    seen = 0
    assert proc.stderr is not None
    for line in proc.stderr:  # wait for a few count events, then send the signal
        seen += "counted event" in line
        if seen >= 5 or time.monotonic() > deadline:
            break
    assert seen >= 5, "the CLI did not count in time"
    proc.send_signal(signum)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    report = json.loads(report_path.read_text())
    assert report["status"] == "stopped" and report["error"] is None
    assert 0 < report["stats"]["frames_out"] < 795
    assert _frame_count(output) == report["video_frames"] == report["stats"]["frames_out"]
    assert len(read_events(events)) == report["events_total"] > 0
    assert "stopped:" in stdout


@pytest.mark.parametrize("command", [["gui"], ["VIDEO", "--show"]], ids=["gui", "show"])
def test_unreachable_display_is_one_line_not_an_abort(command: list[str], weights: str, tmp_path: Path) -> None:
    """Item 8: ``--show`` or ``gui`` with a display that does not answer aborted (SIGABRT, 134)."""
    video = str(shared_path("data", "videos", CLIP))
    args = [video if part == "VIDEO" else part for part in command]
    if "--show" in args:
        args += ["--weights", weights, "--img-size", IMG_SIZE, "--max-frames", "2"]
    env = {"DISPLAY": ":87", "QT_QPA_PLATFORM": "", "WAYLAND_DISPLAY": ""}
    proc = _cli(args, env)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1, err
    assert len(lines) == 1 and "cannot open a window" in lines[0] and ":87" in lines[0], err


def test_an_output_replaced_by_rename_needs_only_its_folder_writable(tmp_path: Path, monkeypatch) -> None:
    """The video and the report are renamed onto their path when complete: a read-only old file
    there is no reason to refuse the run (an events file, appended to, is)."""
    from app.paths import RunOutput, RunPathError, check_run_paths

    old = tmp_path / "old.mp4"
    old.write_bytes(b"x")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == old else real_access(p, mode))
    check_run_paths(None, [RunOutput("--output", old, replaced=True)])
    with pytest.raises(RunPathError, match="not writable"):
        check_run_paths(None, [RunOutput("--events", old)])
