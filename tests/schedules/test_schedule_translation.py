"""Translation between our schedule models and temporalio's, without a server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import ScheduleCalendarSpec, ScheduleRange, ScheduleSpec

from api.schedules.schemas import ScheduleSpecIn, format_duration, parse_duration
from api.schedules.translate import public_spec, ranges_text, temporal_spec


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (90, timedelta(seconds=90)),
        (1.5, timedelta(seconds=1.5)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("PT1H", timedelta(hours=1)),
        ("P1DT2H", timedelta(days=1, hours=2)),
    ],
)
def test_durations_are_read_from_seconds_compact_text_and_iso_8601(
    given: object, expected: timedelta
) -> None:
    assert parse_duration(given) == expected


@pytest.mark.parametrize("given", ["", "soon", "5 minutes", "1h-5m", True, "m5", "P"])
def test_anything_else_is_not_a_duration_and_the_error_shows_the_forms(given: object) -> None:
    with pytest.raises(ValueError, match="'30s', '5m', '1h30m'"):
        parse_duration(given)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2, seconds=5), "2d5s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(0), "0s"),
    ],
)
def test_answers_write_durations_in_the_compact_form(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    ("ranges", "text"),
    [
        ([ScheduleRange(0, 59)], "*"),
        ([ScheduleRange(0, 59, 15)], "*/15"),
        ([ScheduleRange(5)], "5"),
        ([ScheduleRange(1, 5)], "1-5"),
        ([ScheduleRange(0, 30, 10)], "0-30/10"),
        ([ScheduleRange(1), ScheduleRange(15)], "1,15"),
    ],
)
def test_calendar_ranges_read_as_cron_fields(ranges: list[ScheduleRange], text: str) -> None:
    assert ranges_text(ranges, (0, 59)) == text


def test_calendars_temporal_made_from_cron_read_back_as_the_same_cron() -> None:
    # What the server stores for "30 4 * * 1-5" (cron is translated into a calendar).
    stored = ScheduleSpec(
        calendars=[
            ScheduleCalendarSpec(
                second=(ScheduleRange(0),),
                minute=(ScheduleRange(30),),
                hour=(ScheduleRange(4),),
                day_of_month=(ScheduleRange(1, 31),),
                month=(ScheduleRange(1, 12),),
                day_of_week=(ScheduleRange(1, 5),),
            )
        ]
    )

    shown = public_spec(stored)

    assert shown.cron == ["30 4 * * 1-5"]
    assert shown.calendars == []


def test_calendars_cron_cannot_express_are_shown_field_by_field() -> None:
    stored = ScheduleSpec(
        calendars=[
            ScheduleCalendarSpec(second=(ScheduleRange(0, 59, 30),), year=(ScheduleRange(2027),))
        ]
    )

    shown = public_spec(stored)

    assert shown.cron == []
    (calendar,) = shown.calendars
    assert (calendar.second, calendar.minute, calendar.hour, calendar.year) == (
        "*/30",
        "0",
        "0",
        "2027",
    )


def test_request_spec_becomes_temporal_spec() -> None:
    spec = ScheduleSpecIn.model_validate(
        {
            "cron": ["0 3 * * *"],
            "intervals": [{"every": "1h", "offset": 300}],
            "time_zone": "Europe/Berlin",
            "jitter": "30s",
        }
    )

    translated = temporal_spec(spec)

    assert translated.cron_expressions == ["0 3 * * *"]
    assert translated.intervals[0].every == timedelta(hours=1)
    assert translated.intervals[0].offset == timedelta(minutes=5)
    assert translated.time_zone_name == "Europe/Berlin"
    assert translated.jitter == timedelta(seconds=30)
