"""The argparse converters every command line shares (yolov7_track/arg_types.py)."""

import argparse

import pytest

from yolov7_track.arg_types import non_negative_float, non_negative_int, positive_int, unit_float


@pytest.mark.parametrize(("convert", "text", "value"), [
    (positive_int, "1", 1), (positive_int, "640", 640),
    (non_negative_int, "0", 0), (non_negative_int, "3", 3),
    (unit_float, "0", 0.0), (unit_float, "0.25", 0.25), (unit_float, "1", 1.0),
    (non_negative_float, "0", 0.0), (non_negative_float, "15.5", 15.5),
])
def test_accepts(convert, text, value):
    result = convert(text)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(("convert", "text", "wording"), [
    (positive_int, "0", "a positive integer"), (positive_int, "-2", "a positive integer"),
    (positive_int, "1.5", "a positive integer"), (positive_int, "ten", "a positive integer"),
    (non_negative_int, "-1", "an integer >= 0"), (non_negative_int, "x", "an integer >= 0"),
    (unit_float, "1.01", "a number in [0, 1]"), (unit_float, "-0.1", "a number in [0, 1]"),
    (unit_float, "nan", "a number in [0, 1]"), (unit_float, "half", "a number in [0, 1]"),
    (non_negative_float, "-1", "a finite number >= 0"), (non_negative_float, "inf", "a finite number >= 0"),
    (non_negative_float, "nan", "a finite number >= 0"),
])
def test_rejects_with_the_text_named(convert, text, wording):
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected .*got") as caught:
        convert(text)
    assert wording in str(caught.value) and repr(text) in str(caught.value)


def test_a_command_line_shows_the_wording(capsys):
    from training.cli import train_parser

    with pytest.raises(SystemExit):
        train_parser().parse_args(["--data", "x.yaml", "--epochs", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err
