"""The tracker registry (tracker/registry.py): the one place a tracker is added."""

from __future__ import annotations

import pytest

from tracker import SORT, ByteTrack, InvalidTrackerConfigError
from tracker.registry import TRACKERS, make_tracker, parse_tracker_params, tracker_parameters


def test_every_registered_tracker_builds_with_its_defaults_and_a_frame_rate():
    assert set(TRACKERS) == {"bytetrack", "sort"}
    assert isinstance(make_tracker("bytetrack", frame_rate=25.0), ByteTrack)
    sort = make_tracker("sort", {"max_age": 5}, frame_rate=10.0)
    assert isinstance(sort, SORT) and sort.config.max_age == 5 and sort.config.frame_rate == 10.0


def test_parameters_are_the_config_fields_without_the_frame_rate():
    params = tracker_parameters("bytetrack")
    assert params["track_thresh"] == (float, 0.5) and params["track_buffer"] == (int, 30)
    assert "frame_rate" not in params and "frame_rate" not in tracker_parameters("sort")


def test_command_line_parameters_are_typed():
    assert parse_tracker_params("bytetrack", ["track_thresh=0.6", "class_aware=yes", "track_buffer=60"]) == {
        "track_thresh": 0.6, "class_aware": True, "track_buffer": 60}


@pytest.mark.parametrize(("name", "items", "message"), [
    ("deepsort", [], "unknown tracker 'deepsort'; choose one of bytetrack, sort"),
    ("sort", ["track_thresh=0.5"], "KEY one of max_age, min_hits, iou_threshold, class_aware"),
    ("sort", ["max_age"], "expected KEY=VALUE"),
    ("sort", ["max_age=two"], "max_age must be int, got 'two'"),
    ("bytetrack", ["class_aware=maybe"], "class_aware must be true or false"),
])
def test_bad_names_and_values_are_named(name, items, message):
    with pytest.raises(InvalidTrackerConfigError, match=message):
        parse_tracker_params(name, items)


def test_out_of_range_values_are_refused_by_the_tracker_config():
    with pytest.raises(InvalidTrackerConfigError, match="track_thresh"):
        make_tracker("bytetrack", {"track_thresh": 1.5})
    with pytest.raises(InvalidTrackerConfigError, match="has no parameter min_hits"):
        make_tracker("bytetrack", {"min_hits": 3})
