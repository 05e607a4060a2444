"""The editable lines and zones (no Qt): edits, validation, hit testing, zone-file round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.counting import CountingConfig, LineSpec, ZoneSpec, load_counting_config, save_counting_config
from app.gui.shapes import CountingShapes, Hit, ShapeError
from app.render import in_arrow

SQUARE = ((100.0, 100.0), (200.0, 100.0), (200.0, 200.0), (100.0, 200.0))


def make_shapes() -> CountingShapes:
    shapes = CountingShapes()
    shapes.add_line((0, 50), (300, 50))
    shapes.add_zone(SQUARE)
    return shapes


def test_names_are_generated_and_unique() -> None:
    shapes = make_shapes()
    assert shapes.names == ("line1", "zone1")
    assert shapes.add_line((0, 0), (50, 0)) == "line2"
    assert shapes.add_zone(SQUARE, name=" queue ") == "queue"
    with pytest.raises(ShapeError, match="already used"):
        shapes.add_line((0, 0), (50, 0), name="queue")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.add_line((0, 0), (3, 4)), "5.0 px long"),
        (lambda s: s.add_zone(((0, 0), (10, 0))), "at least 3 vertices"),
        (lambda s: s.add_zone(((0, 0), (10, 0), (20, 0))), "zero area"),
        (lambda s: s.rename("line1", "zone1"), "already used"),
        (lambda s: s.rename("line1", "  "), "non-empty name"),
        (lambda s: s.flip("zone1"), "only lines have an IN direction"),
        (lambda s: s.remove("nope"), "no line or zone named 'nope'"),
        (lambda s: s.move_handle("line1", 2, (0, 0)), "has no handle 2"),
        (lambda s: s.move_handle("line1", 1, (2, 50)), "lines need at least"),
        (lambda s: s.add_line((0, float("nan")), (10, 10)), "finite"),
    ],
)
def test_invalid_edits_raise_and_leave_the_set_unchanged(edit, message: str) -> None:  # noqa: ANN001
    shapes = make_shapes()
    before = (shapes.lines, shapes.zones)
    with pytest.raises(ShapeError, match=message):
        edit(shapes)
    assert (shapes.lines, shapes.zones) == before


def test_flip_swaps_endpoints_and_reverses_the_in_arrow() -> None:
    shapes = make_shapes()
    tail, tip = in_arrow((0, 50), (300, 50), 40)
    assert tip[1] < tail[1]  # drawn left to right: IN points up
    shapes.flip("line1")
    line = shapes.lines[0]
    assert (line.start, line.end) == ((300.0, 50.0), (0.0, 50.0))
    tail, tip = in_arrow(line.start, line.end, 40)
    assert tip[1] > tail[1]


def test_rename_keeps_order_and_geometry() -> None:
    shapes = make_shapes()
    shapes.add_line((0, 90), (300, 90))
    shapes.rename("line1", "road")
    assert shapes.names == ("road", "line2", "zone1")
    assert shapes.lines[0] == LineSpec("road", (0.0, 50.0), (300.0, 50.0))


def test_move_handle_and_translate() -> None:
    shapes = make_shapes()
    shapes.move_handle("zone1", 2, (250, 260))
    assert shapes.zones[0].polygon[2] == (250.0, 260.0)
    shapes.translate("line1", 10, -5)
    assert shapes.handles("line1") == ((10.0, 45.0), (310.0, 45.0))


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((1, 52), Hit("line1", "line", 0)),        # near the start: handle
        ((150, 53), Hit("line1", "line", None)),   # near the segment: body
        ((150, 150), Hit("zone1", "zone", None)),  # inside the zone
        ((199, 199), Hit("zone1", "zone", 2)),     # on a vertex
        ((150, 80), None),
        ((400, 400), None),
    ],
)
def test_hit_testing(point, expected) -> None:  # noqa: ANN001
    assert make_shapes().hit(point, tolerance_px=5.0) == expected


def test_config_round_trip_through_the_cli_zone_file(tmp_path: Path) -> None:
    shapes = make_shapes()
    config = shapes.to_config()
    assert config == CountingConfig(
        lines=(LineSpec("line1", (0.0, 50.0), (300.0, 50.0)),), zones=(ZoneSpec("zone1", SQUARE),), normalized=False)
    for name in ("zones.json", "zones.yaml"):
        save_counting_config(config, tmp_path / name)
        loaded = CountingShapes()
        loaded.load(load_counting_config(tmp_path / name), 640, 480)
        assert loaded.to_config() == config
    assert CountingShapes().to_config() is None


def test_load_scales_normalized_configs_to_the_frame() -> None:
    shapes = CountingShapes()
    shapes.load(CountingConfig(lines=(LineSpec("mid", (0.0, 0.5), (1.0, 0.5)),), normalized=True), 640, 360)
    assert shapes.lines == (LineSpec("mid", (0.0, 180.0), (640.0, 180.0)),)
