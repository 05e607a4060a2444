"""Command-line entry point ``yolov7-track``.

``yolov7-track SOURCE [options]`` runs the capture -> infer -> render pipeline on SOURCE;
``yolov7-track COMMAND ...`` runs a subcommand (``convert``, and later ``train``, ``val``, ``gui``).
Errors that come from bad input are reported as one line on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UserInputError(Exception):
    """Bad input from the user (file, URL, option); reported as one line without a traceback."""


def _convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov7-track convert",
        description="Convert an official YOLOv7 release checkpoint (.pt) to yolov7-track's "
        "safetensors format (weights + JSON metadata). The .pt file is read by a restricted "
        "unpickler: no code in it is executed.",
    )
    parser.add_argument("source", help="official checkpoint (.pt), or a registry name such as yolov7-tiny")
    parser.add_argument("output", help="output path (.safetensors)")
    parser.add_argument(
        "--fp32", action="store_true", help="store float32 weights (default: float16, as released)"
    )
    return parser


def _run_convert(argv: Sequence[str]) -> int:
    args = _convert_parser().parse_args(argv)
    from detector import load_model, save_model

    model = load_model(args.source, device="cpu", fuse=False)
    path = save_model(model, args.output, half=not args.fp32)
    logger.info("wrote %s", path)
    print(f"wrote {path}")
    return EXIT_OK


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "convert": _run_convert,
}


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input': reported in one line, no traceback."""
    errors: list[type[BaseException]] = [UserInputError, FileNotFoundError]
    try:
        from detector.errors import DetectorError

        errors.append(DetectorError)
    except ImportError:  # detector not importable: nothing to add
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        names = ", ".join(sorted(SUBCOMMANDS))
        print(f"usage: yolov7-track SOURCE [options] | yolov7-track COMMAND ...\ncommands: {names}")
        return EXIT_OK if argv else EXIT_USAGE
    command = argv[0]
    if command not in SUBCOMMANDS:
        print(f"yolov7-track: unknown command or source {command!r}; commands: "
              f"{', '.join(sorted(SUBCOMMANDS))}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return SUBCOMMANDS[command](argv[1:])
    except _known_errors() as exc:
        print(f"yolov7-track {command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("yolov7-track: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
