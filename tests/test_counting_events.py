"""CountEvent's camera_id and wall_time fields, and the wall-time helpers."""

from __future__ import annotations

import math

import pytest

from app.counting import EVENT_FIELDS, CountEvent, Direction
from app.counting.events import LEGACY_EVENT_FIELDS, wall_time_epoch_ms, wall_time_epoch_s, wall_time_iso


def test_positional_construction_of_the_old_fields_still_works() -> None:
    event = CountEvent(1.5, 3, "door", 7, "person", Direction.IN, 0.25)
    assert (event.dwell_s, event.camera_id, event.wall_time) == (0.25, None, None)


def test_the_new_columns_come_last() -> None:
    assert EVENT_FIELDS == (*LEGACY_EVENT_FIELDS, "camera_id", "wall_time")
    assert tuple(CountEvent(0.0, 0, "z", 1, "car", "in").as_dict()) == EVENT_FIELDS


@pytest.mark.parametrize(
    ("epoch_s", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1796562301.25, "2026-12-06T13:05:01.250Z"),
        (1796562301.2506, "2026-12-06T13:05:01.251Z"),  # nearest millisecond
        (1796562299.9996, "2026-12-06T13:05:00.000Z"),  # rounds up across the second
        (-1.5, "1969-12-31T23:59:58.500Z"),
        (951782400.0, "2000-02-29T00:00:00.000Z"),
    ],
)
def test_wall_time_iso_and_back(epoch_s: float, text: str) -> None:
    assert wall_time_iso(epoch_s) == text
    assert wall_time_epoch_s(text) == round(epoch_s * 1000) / 1000
    assert wall_time_epoch_ms(text) == round(epoch_s * 1000)


@pytest.mark.parametrize("epoch_s", [math.nan, math.inf, 1e18])
def test_wall_time_iso_refuses_what_is_no_date(epoch_s: float) -> None:
    with pytest.raises(ValueError, match="wall time"):
        wall_time_iso(epoch_s)


def test_plus_zero_offset_is_accepted_and_normalized_to_z() -> None:
    event = CountEvent(0.0, 0, "z", 1, "car", "in", wall_time="2026-12-06T13:05:01.250+00:00")
    assert event.wall_time == "2026-12-06T13:05:01.250Z"
    assert event == CountEvent(0.0, 0, "z", 1, "car", "in", wall_time="2026-12-06T13:05:01.250Z")


@pytest.mark.parametrize(
    "wall_time",
    [
        "2026-12-06T13:05:01Z",  # no milliseconds
        "2026-12-06T13:05:01.25Z",
        "2026-12-06T13:05:01.250",  # no zone
        "2026-12-06T13:05:01.250+01:00",  # not UTC
        "2026-12-06 13:05:01.250Z",
        "2026-02-30T13:05:01.250Z",  # no such day
        "2026-12-06T24:00:00.000Z",
        "١٩٧٠-01-01T00:00:00.000Z",  # non-ASCII digits
        "",
        1796562301.25,
    ],
)
def test_a_malformed_wall_time_is_refused_with_the_text(wall_time: object) -> None:
    with pytest.raises(ValueError, match="wall time"):
        CountEvent(0.0, 0, "z", 1, "car", "in", wall_time=wall_time)  # type: ignore[arg-type]


@pytest.mark.parametrize("camera_id", ["", 3])
def test_camera_id_must_be_a_non_empty_string(camera_id: object) -> None:
    with pytest.raises(ValueError, match="camera_id"):
        CountEvent(0.0, 0, "z", 1, "car", "in", camera_id=camera_id)  # type: ignore[arg-type]


def test_dict_round_trip_with_and_without_the_new_fields() -> None:
    stamped = CountEvent(2.0, 50, "road", 9, "bus", "out", None, "gate-1", "2026-12-06T13:05:01.250Z")
    assert CountEvent.from_dict(stamped.as_dict()) == stamped
    as_csv = {k: "" if v is None else str(v) for k, v in stamped.as_dict().items()}
    assert CountEvent.from_dict(as_csv) == stamped
    old_row = {k: v for k, v in stamped.as_dict().items() if k in LEGACY_EVENT_FIELDS}
    assert CountEvent.from_dict(old_row) == CountEvent(2.0, 50, "road", 9, "bus", "out")
