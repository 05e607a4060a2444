"""``yolov7-track serve CAMERAS.yaml``: run a cameras file until its cameras end or a signal.

Signals: SIGTERM and Ctrl-C (SIGINT) stop every camera cleanly (each writes out what it has
inferred, every output is finalized) and exit 0 (SIGTERM) or 130 (Ctrl-C); SIGHUP reloads the
file (:meth:`app.service.Service.reload`; an invalid new file is logged and ignored).
``--ray [auto|ADDRESS]`` runs the same file on a Ray cluster (:mod:`app.ray_service`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from app.cli import EXIT_INTERRUPTED, EXIT_OK, PROG, _OneLineArgumentParser

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineArgumentParser(
        prog=f"{PROG} serve",
        description="Count on many cameras with one shared detector: events to a file, MQTT and a "
                    "webhook, metrics at /metrics, status at /status (the cameras file format: app/cameras.py).")
    parser.add_argument("cameras", type=Path, help="the cameras file (.yaml, .yml or .json)")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="stop after this many seconds (default: when every camera has ended, or on a signal)")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="auto|ADDRESS",
                        help="run the cameras as Ray actors (needs the ray extra): alone, a local Ray instance "
                             "(or $RAY_ADDRESS); 'auto', the cluster `ray start` runs here; or a cluster's address")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_serve(argv: Sequence[str]) -> int:
    """Entry point of ``yolov7-track serve``; returns the exit status."""
    args = _parser().parse_args(list(argv))
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    from app.cameras import CamerasFileError, load_cameras_file

    if args.ray is not None:  # Ray is imported only here, and only for --ray
        from app.ray_service import RayService
        from app.ray_service.config import config_from_file

        cameras = load_cameras_file(args.cameras)
        service = RayService(cameras, config=config_from_file(cameras.ray, None if args.ray == "local" else args.ray))
    else:
        from app.service import Service

        service = Service(load_cameras_file(args.cameras))
    wake = threading.Event()
    requests: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        requests.append({signal.SIGHUP: "reload", signal.SIGINT: "interrupt"}.get(signum, "stop"))
        wake.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    status = EXIT_OK
    try:
        service.start()
        print(f"{PROG} serve: {len(service.file.cameras)} camera(s) from {args.cameras}"
              + (f"; metrics at {service.metrics_server.url}/metrics" if service.metrics_server else ""), flush=True)
        started = _monotonic()
        while True:
            remaining = None if args.duration_s is None else args.duration_s - (_monotonic() - started)
            if remaining is not None and remaining <= 0:
                break
            if service.wait(timeout_s=0.5 if remaining is None else min(0.5, remaining)):
                break
            wake.clear()
            action = requests.pop(0) if requests else None
            if action == "reload":
                try:
                    service.reload()
                except CamerasFileError as exc:
                    logger.error("reload refused, the cameras go on unchanged: %s", exc)
            elif action in ("stop", "interrupt"):
                status = EXIT_INTERRUPTED if action == "interrupt" else EXIT_OK
                break
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for camera in service.status()["cameras"]:
        print(f"{camera['id']}: {camera['state']}, {camera['frames']} frames, {camera['events']} events, "
              f"counts {camera['counts']}", flush=True)
    return status


def _monotonic() -> float:
    import time

    return time.monotonic()
