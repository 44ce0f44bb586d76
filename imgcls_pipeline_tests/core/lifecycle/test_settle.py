from imgcls_pipeline.core.lifecycle.settle import Sighting, quiet_seconds_left, watch


def test_a_run_waits_until_the_folder_stays_unchanged_for_the_window() -> None:
    first = watch(None, "3-aaa", now=1000.0)
    assert quiet_seconds_left(first, now=1000.0, settle_minutes=10) == 600
    still_copying = watch(first, "4-bbb", now=1300.0)  # another photo landed: start again
    assert still_copying.since == 1300.0
    assert quiet_seconds_left(still_copying, now=1800.0, settle_minutes=10) == 100
    quiet = watch(still_copying, "4-bbb", now=1900.0)
    assert quiet == still_copying
    assert quiet_seconds_left(quiet, now=1900.0, settle_minutes=10) == 0


def test_zero_minutes_settles_at_once() -> None:
    assert quiet_seconds_left(watch(None, "1-x", now=5.0), now=5.0, settle_minutes=0) == 0


def test_cursor_round_trip_and_unreadable_cursors() -> None:
    sighting = Sighting("7-abc", 12.5)
    assert Sighting.from_cursor(sighting.to_cursor()) == sighting
    for cursor in (None, "", "7-abc", '{"fingerprint": "x"}', "[1, 2]"):
        assert Sighting.from_cursor(cursor) is None
