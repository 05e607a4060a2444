"""``yolov7-track export``: weights -> ONNX or OpenVINO IR (optionally int8), metadata inside.

::

    yolov7-track export WEIGHTS --format onnx|openvino [--precision fp32|fp16] [--int8 --calib DIR]
                        [--calib-frames N] [--img-size N] [--exporter torchscript|dynamo] [--output PATH]

Default output, in the current folder: ``NAME.onnx``, ``NAME_openvino/NAME.xml`` (+ ``.bin``),
``NAME_int8_openvino/NAME_int8.xml`` with ``--int8``; ``NAME`` is the weights' file stem or
registry name. Prints one line naming the file written. The library side is
:mod:`detector.export`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from app.cli import EXIT_OK, PROG, _OneLineArgumentParser

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")
PRECISION_CHOICES = ("fp32", "bf16", "fp16")
_EXTRAS = {"onnx": (("onnx", "ONNX export"),),
           "openvino": (("openvino", "OpenVINO export"), ("onnx", "OpenVINO export"))}


def export_parser() -> argparse.ArgumentParser:
    parser = _OneLineArgumentParser(
        prog=f"{PROG} export",
        description="Export weights to ONNX (ONNX Runtime) or OpenVINO IR, optionally quantised to int8 "
        "with NNCF. The export takes (B, 3, H, W) float32 RGB in [0, 1] (any batch, H and W multiples "
        "of the stride) and returns the decoded (B, N, 5 + classes) prediction; class names, strides "
        "and img_size travel inside the file. Run it with --backend onnxruntime|openvino.",
    )
    parser.add_argument("weights",
                        help="weights: .safetensors, official .pt, or a name (yolov7-tiny-traffic, yolov7-tiny, ...)")
    parser.add_argument("--format", choices=FORMATS, required=True, help="onnx or openvino")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                        help="stored weights: fp32, or fp16 (OpenVINO, compressed). bf16 is a compute "
                        "precision: export fp32 and run with --precision bf16")
    parser.add_argument("--int8", action="store_true", help="OpenVINO only: NNCF post-training int8 quantisation")
    parser.add_argument("--calib", type=Path, metavar="DIR",
                        help="with --int8: folder of images and/or videos of the scene (or one video) to calibrate on")
    parser.add_argument("--calib-frames", type=int, default=300, metavar="N", help="calibration frames at most (300)")
    parser.add_argument("--img-size", type=int, metavar="N",
                        help="default letterbox size stored in the export, a multiple of the stride (default: the model's)")
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                        help="torch.onnx exporter: torchscript (fast, default) or dynamo (torch.export, needs onnxscript)")
    parser.add_argument("--output", type=Path, metavar="PATH",
                        help="output .onnx or .xml (default: NAME.onnx, NAME_openvino/NAME.xml)")
    return parser


def _check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit status 2) for option combinations that cannot work."""
    if args.precision == "bf16":
        parser.error("--precision bf16 is chosen when the model runs: export fp32 and run it with "
                     "--backend openvino --precision bf16")
    if args.format == "onnx" and args.precision != "fp32":
        parser.error(f"--precision {args.precision}: ONNX exports are fp32")
    if args.int8 and args.format != "openvino":
        parser.error("--int8 needs --format openvino (NNCF quantises the OpenVINO model)")
    if args.int8 and args.calib is None:
        parser.error("--int8 needs --calib DIR: a folder of images or a video of the scene")
    if args.calib is not None and not args.int8:
        parser.error("--calib is used with --int8 only")
    if args.calib_frames < 1:
        parser.error(f"--calib-frames must be >= 1, got {args.calib_frames}")
    expected = ".onnx" if args.format == "onnx" else ".xml"
    if args.output is not None and args.output.suffix.lower() != expected:
        parser.error(f"--output {args.output}: use a file name ending in {expected} for --format {args.format}")


def default_output(weights: str, fmt: str, int8: bool) -> Path:
    """``NAME.onnx`` or ``NAME[_int8]_openvino/NAME[_int8].xml`` in the current folder."""
    name = Path(weights).name
    for suffix in (".safetensors", ".pt", ".pth"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    if fmt == "onnx":
        return Path(f"{name}.onnx")
    name = f"{name}_int8" if int8 else name
    return Path(f"{name}_openvino") / f"{name}.xml"


def run_export(argv: Sequence[str]) -> int:
    """Run ``yolov7-track export``; return the exit status (usage errors exit 2 through argparse).

    Raises:
        detector.export.MissingExtraError: the format's extra is not installed.
        the errors of :func:`detector.load_model` and :mod:`detector.export` (one line each in
        :func:`app.cli.main`).
    """
    parser = export_parser()
    args = parser.parse_args(list(argv))
    _check_options(parser, args)
    from detector.export import export_onnx, export_openvino, require_module  # torch loads here

    for module, purpose in _EXTRAS[args.format] + ((("nncf", "int8 quantisation"),) if args.int8 else ()):
        require_module(module, purpose, extra=args.format)  # before the model loads: fail at once
    from detector.runtimes import resolve_weights_file

    source, sha256 = resolve_weights_file(args.weights)
    from detector import load_model

    model = load_model(source, device="cpu", fuse=True)
    output = args.output if args.output is not None else default_output(args.weights, args.format, args.int8)
    common = {"img_size": args.img_size, "exporter": args.exporter, "source_sha256": sha256}
    if args.format == "onnx":
        path = export_onnx(model, output, **common)
    else:
        path = export_openvino(model, output, precision=args.precision, int8=args.int8, calib=args.calib,
                               calib_frames=args.calib_frames, **common)
    print(f"wrote {path}")
    return EXIT_OK
