"""Zone files: reading, writing, normalized coordinates, and errors that name file and field."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from app.counting import (
    Anchor,
    CountingConfig,
    CountingLine,
    CountingZone,
    LineRules,
    LineSpec,
    ZoneConfigError,
    ZoneRules,
    ZoneSpec,
    load_counting_config,
    parse_counting_config,
    save_counting_config,
)

PIXEL_CONFIG = CountingConfig(
    lines=(
        LineSpec("door", (100.0, 400.0), (500.0, 400.0)),
        LineSpec("gate", (10.0, 0.0), (10.0, 300.0), Anchor.CENTER),
    ),
    zones=(ZoneSpec("queue", ((0.0, 0.0), (200.0, 0.0), (200.0, 150.0)), Anchor.TOP_CENTER),),
)
NORMALIZED_CONFIG = CountingConfig(
    lines=(LineSpec("mid", (0.0, 0.5), (1.0, 0.5)),),
    zones=(ZoneSpec("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))),),
    normalized=True,
)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
@pytest.mark.parametrize("config", [PIXEL_CONFIG, NORMALIZED_CONFIG], ids=["pixels", "normalized"])
def test_save_then_load_round_trips(tmp_path: Path, suffix: str, config: CountingConfig) -> None:
    path = tmp_path / f"zones{suffix}"
    save_counting_config(config, path)
    assert load_counting_config(path) == config
    assert not list(tmp_path.glob("*.tmp"))


def test_minimal_yaml_file_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    path.write_text(
        "lines:\n  - name: a\n    start: [10, 20]\n    end: [300, 20]\n"
        "zones:\n  - name: z\n    polygon: [[0, 0], [50, 0], [50, 50]]\n"
    )
    config = load_counting_config(path)
    assert config == CountingConfig(
        lines=(LineSpec("a", (10.0, 20.0), (300.0, 20.0), Anchor.BOTTOM_CENTER),),
        zones=(ZoneSpec("z", ((0.0, 0.0), (50.0, 0.0), (50.0, 50.0))),),
        normalized=False,
    )


def test_coordinates_all_in_unit_range_are_read_as_normalized(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "zones.json"
    path.write_text(json.dumps({"lines": [{"name": "a", "start": [0, 0.5], "end": [1, 0.5]}]}))
    with caplog.at_level(logging.INFO, logger="app.counting.config"):
        config = load_counting_config(path)
    assert config.normalized
    assert "normalized" in caplog.text


def test_explicit_flag_wins_over_detection() -> None:
    data = {"normalized": False, "lines": [{"name": "a", "start": [0, 0], "end": [1, 1]}]}
    assert not parse_counting_config(data).normalized


def test_to_pixels_and_build() -> None:
    pixels = NORMALIZED_CONFIG.to_pixels(640, 480)
    assert not pixels.normalized
    assert pixels.lines[0].start == (0.0, 240.0) and pixels.lines[0].end == (640.0, 240.0)
    assert pixels.zones[0].polygon[2] == (320.0, 480.0)
    assert PIXEL_CONFIG.to_pixels(640, 480) is PIXEL_CONFIG

    lines, zones = NORMALIZED_CONFIG.build(
        640, 480, line_rules=LineRules.robust(), zone_rules=ZoneRules.robust(), max_absent_s=3.0
    )
    assert [type(x) for x in lines + zones] == [CountingLine, CountingZone]
    assert lines[0].name == "mid" and lines[0].start == (0.0, 240.0)
    assert lines[0].rules == LineRules.robust() and lines[0].max_absent_s == 3.0
    assert zones[0].rules == ZoneRules.robust()
    assert zones[0].polygon.tolist() == [[0, 0], [320, 0], [320, 480], [0, 480]]
    with pytest.raises(ValueError, match="frame size"):
        NORMALIZED_CONFIG.to_pixels(0, 480)


_LINE = {"name": "a", "start": [0, 10], "end": [100, 10]}
_ZONE = {"name": "z", "polygon": [[0, 0], [10, 0], [10, 10]]}


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ([1, 2], "", "expected a mapping"),
        (None, "", "empty file"),
        ({}, "", "no lines and no zones"),
        ({"line": [_LINE]}, "line", "unknown field"),
        ({"lines": {"name": "a"}}, "lines", "expected a list"),
        ({"lines": ["a"]}, "lines[0]", "expected a mapping"),
        ({"lines": [_LINE, {**_LINE, "name": "b", "start": "abc"}]}, "lines[1].start", "expected two numbers"),
        ({"lines": [{**_LINE, "start": [1, 2, 3]}]}, "lines[0].start", "expected two numbers"),
        ({"lines": [{**_LINE, "start": [1, True]}]}, "lines[0].start", "expected two numbers"),
        ({"lines": [{**_LINE, "end": [1, ".nan"]}]}, "lines[0].end", "expected two numbers"),
        ({"lines": [{"name": "a", "start": [0, 0]}]}, "lines[0].end", "missing"),
        ({"lines": [{**_LINE, "end": [0, 10]}]}, "lines[0].end", "equals start"),
        ({"lines": [{**_LINE, "stat": [0, 0]}]}, "lines[0].stat", "unknown field"),
        ({"lines": [{**_LINE, "name": ""}]}, "lines[0].name", "non-empty string"),
        ({"lines": [{**_LINE, "name": 7}]}, "lines[0].name", "non-empty string"),
        ({"lines": [{**_LINE, "anchor": "feet"}]}, "lines[0].anchor", "unknown anchor"),
        ({"lines": [_LINE], "zones": [{**_ZONE, "name": "a"}]}, "zones[0].name", "already used by lines[0]"),
        ({"zones": [{**_ZONE, "polygon": [[0, 0], [1, 1]]}]}, "zones[0].polygon", "at least 3"),
        ({"zones": [{**_ZONE, "polygon": [[0, 0], [1, 1], [2, 2]]}]}, "zones[0].polygon", "zero area"),
        ({"zones": [{**_ZONE, "polygon": [[0, 0], [1, 0], "x"]}]}, "zones[0].polygon[2]", "two numbers"),
        ({"zones": [{"name": "z"}]}, "zones[0].polygon", "missing"),
        ({"normalized": "yes", "lines": [_LINE]}, "normalized", "true or false"),
        ({"normalized": True, "lines": [_LINE]}, "lines[0].start", "must lie in [0, 1]"),
    ],
)
def test_errors_name_the_file_and_the_field(
    tmp_path: Path, data: object, field: str, reason: str
) -> None:
    path = tmp_path / "zones.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ZoneConfigError) as caught:
        load_counting_config(path)
    error = caught.value
    assert error.source == str(path)
    assert error.field == field
    assert reason in error.reason
    assert str(error).startswith(f"{path}: {field + ': ' if field else ''}")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.json", None, "file not found"),
        ("zones.txt", "lines: []", "unsupported extension"),
        ("zones.json", "{lines: [", "not valid JSON"),
        ("zones.yaml", "lines: [", "not valid YAML"),
    ],
)
def test_file_level_errors(tmp_path: Path, name: str, content: str | None, reason: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ZoneConfigError, match=reason) as caught:
        load_counting_config(path)
    assert str(path) in str(caught.value)


def test_in_memory_config_is_validated_too() -> None:
    with pytest.raises(ZoneConfigError, match=r"<config>: lines\[1\]\.name: 'a' is already used"):
        CountingConfig(lines=(LineSpec("a", (0, 0), (1, 1)), LineSpec("a", (0, 0), (2, 2))))


def test_writer_refuses_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ZoneConfigError, match="unsupported extension"):
        save_counting_config(PIXEL_CONFIG, tmp_path / "zones.toml")


def test_non_finite_coordinates_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    path.write_text("lines:\n  - {name: a, start: [0, .nan], end: [10, 10]}\n")
    with pytest.raises(ZoneConfigError, match=r"lines\[0\]\.start: expected finite numbers"):
        load_counting_config(path)
