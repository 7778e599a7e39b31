"""The telemetry sink's pure parts: line protocol (escaping, numbers), the bounded buffer's
policy (oldest dropped and counted, never more than its capacity), the rollup arithmetic and
water use from flow or meter totals."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.payloads import READINGS
from gateway.api_history import ReadingName
from gateway.telemetry import (
    HOUR_MS,
    HourRow,
    PointBuffer,
    Reading,
    TelemetrySink,
    aggregate,
    community_of_tags,
    escape_key,
    escape_measurement,
    format_value,
    to_line,
    water_use_per_hour,
)

T0 = 1_795_600_800_000  # an hour start (2026-11-25T08:00:00Z)


def reading(i: int, device: str = "w-1", **fields: float) -> Reading:
    return Reading(device, "water_sensor", "e1", T0 + i, fields or {"temp_c": float(i)})


# --- line protocol ----------------------------------------------------------------------------


def test_tag_values_with_spaces_commas_equals_and_backslashes_are_escaped() -> None:
    assert escape_key("幸福 里,3=号") == "幸福\\ 里\\,3\\=号"
    assert escape_key("a\\b") == "a\\\\b"
    assert escape_key("ends\\") == "ends\\\\"  # cannot escape the separator after it
    assert escape_key("two\nlines\tand\r") == "two\\ lines\\ and\\ "  # controls -> spaces


def test_measurement_escapes_comma_and_space_but_not_equals() -> None:
    assert escape_measurement("water sensor,x=1") == "water\\ sensor\\,x=1"


def test_a_point_has_sorted_tags_omits_unknown_ones_and_writes_floats_with_ms() -> None:
    line, refused = to_line(
        "water_sensor",
        {"device": "w-1", "elder": "e 1", "community": None, "bucket": "b"},
        {"total_l": 12, "flow_l": 3.5},
        T0 + 1,
    )
    assert refused == 0
    assert line == f"water_sensor,bucket=b,device=w-1,elder=e\\ 1 total_l=12.0,flow_l=3.5 {T0 + 1}"


def test_chinese_community_tag_is_kept_as_utf8_text() -> None:
    line, _ = to_line("gas_sensor", {"community": "幸福里社区"}, {"lel_pct": 1.0}, T0)
    assert line is not None and "community=幸福里社区 " in line
    assert line.encode("utf-8").decode("utf-8") == line


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3.0"), (0.1, "0.1"), (1e-05, "1e-05"), (1e16, "1e+16"), (-72.0, "-72.0")],
)
def test_numbers_are_always_floats(value: float, text: str) -> None:
    assert format_value(value) == text
    assert float(text) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "12", None, [1]])
def test_what_is_not_a_finite_number_is_refused(value: object) -> None:
    assert format_value(value) is None


def test_refused_fields_are_counted_and_a_point_with_no_number_left_is_none() -> None:
    line, refused = to_line("gas_sensor", {"device": "g"}, {"lel_pct": "high", "co_ppm": 2}, T0)
    assert refused == 1 and line == f"gas_sensor,device=g co_ppm=2.0 {T0}"
    line, refused = to_line("gas_sensor", {"device": "g"}, {"lel_pct": math.nan}, T0)
    assert line is None and refused == 1


def test_community_comes_from_the_elders_community_tag() -> None:
    assert community_of_tags(["building:3", "community:幸福里"]) == "幸福里"
    assert community_of_tags(["community:"]) is None
    assert community_of_tags(None) is None


def test_every_contract_reading_can_be_charted() -> None:
    assert {r.value for r in ReadingName} == set(READINGS)


# --- the bounded buffer ---------------------------------------------------------------------


def test_a_full_buffer_drops_the_oldest_and_counts_them() -> None:
    buf = PointBuffer(5)
    assert buf.offer([reading(i) for i in range(3)]) == 0
    assert buf.offer([reading(i) for i in range(3, 8)]) == 3
    assert len(buf) == 5 and buf.dropped == 3
    assert [r.ts_ms - T0 for r in buf.take(10)] == [3, 4, 5, 6, 7]


def test_the_batch_in_flight_counts_against_the_capacity() -> None:
    buf = PointBuffer(4)
    buf.offer([reading(i) for i in range(4)])
    batch = buf.take(3)  # 0, 1, 2 in flight; 3 waiting
    assert len(buf) == 4
    assert buf.offer([reading(10), reading(11)]) == 2  # the oldest waiting go: 3 and 10
    assert len(buf) == 4 and buf.dropped == 2
    buf.put_back(batch)  # a failed write: the batch is the oldest again, in order
    assert [r.ts_ms - T0 for r in buf.take(10)] == [0, 1, 2, 11]


def test_a_failed_batch_goes_back_in_front_and_is_the_first_dropped() -> None:
    buf = PointBuffer(4)
    buf.offer([reading(i) for i in range(3)])
    batch = buf.take(2)
    buf.put_back(batch)
    buf.offer([reading(3), reading(4)])  # 5 > 4: the oldest (0) goes
    assert [r.ts_ms - T0 for r in buf.take(10)] == [1, 2, 3, 4]
    buf.done()
    assert len(buf) == 0 and buf.dropped == 1


def test_drain_all_counts_waiting_and_in_flight_points_as_dropped() -> None:
    buf = PointBuffer(10)
    buf.offer([reading(i) for i in range(6)])
    buf.take(2)
    assert buf.drain_all() == 6 and buf.dropped == 6 and len(buf) == 0


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    capacity=st.integers(1, 20),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("offer"), st.integers(0, 30)),
            st.tuples(st.just("take"), st.integers(1, 20)),
            st.tuples(st.just("done"), st.just(0)),
            st.tuples(st.just("fail"), st.just(0)),
        ),
        max_size=60,
    ),
)
def test_buffer_never_exceeds_capacity_and_loses_nothing_uncounted(
    capacity: int, ops: list[tuple[str, int]]
) -> None:
    buf = PointBuffer(capacity)
    offered = written = 0
    inflight: list[Reading] | None = None
    seq = 0
    for op, n in ops:
        if op == "offer":
            buf.offer([reading(seq + i) for i in range(n)])
            seq += n
            offered += n
        elif op == "take" and inflight is None:
            inflight = buf.take(n)
        elif op == "done" and inflight is not None:
            written += len(inflight)
            buf.done()
            inflight = None
        elif op == "fail" and inflight is not None:
            buf.put_back(inflight)
            inflight = None
        assert len(buf) <= capacity
        assert offered == written + buf.dropped + len(buf)
    # What is left is the newest, in order.
    if inflight is not None:
        buf.put_back(inflight)
    left = [r.ts_ms for r in buf.take(capacity)]
    assert left == sorted(left)


def test_offer_is_counted_as_dropped_after_the_sink_stopped() -> None:
    sink = TelemetrySink("http://127.0.0.1:9", "b", "o", buffer_points=10, batch_points=5)
    sink.offer([reading(0), reading(1)])
    assert sink.stop(timeout=0) == 2  # never started: nothing written, both counted
    sink.offer([reading(2)])
    status = sink.status()
    assert status["dropped"] == 3 and status["buffered"] == 0 and status["written"] == 0


def test_a_batch_larger_than_the_buffer_is_refused() -> None:
    with pytest.raises(ValueError):
        TelemetrySink("http://127.0.0.1:9", "b", "o", buffer_points=10, batch_points=11)


# --- rollups ------------------------------------------------------------------------------------


def test_aggregate_per_device_hour_and_field() -> None:
    rs = [
        Reading("g", "gas_sensor", "e", T0 + 1, {"lel_pct": 2.0, "co_ppm": 1.0}),
        Reading("g", "gas_sensor", "e", T0 + 2, {"lel_pct": 6.0}),
        Reading("g", "gas_sensor", "e", T0 + HOUR_MS, {"lel_pct": 1.0}),
        Reading("g", "gas_sensor", "e", T0 + 3, {"lel_pct": math.nan}),  # never stored
        Reading("w", "water_sensor", "e", T0, {"interval_s": 60.0}),  # not a reading
    ]
    aggs = aggregate(rs)
    assert aggs == {  # [count, min, max, sum]
        ("g", T0, "lel_pct"): [2, 2.0, 6.0, 8.0],
        ("g", T0, "co_ppm"): [1, 1.0, 1.0, 1.0],
        ("g", T0 + HOUR_MS, "lel_pct"): [1, 1.0, 1.0, 1.0],
    }


def row(dev: str, hour: int, field: str, mn: float, mx: float, total: float, n: int = 1) -> HourRow:
    return HourRow(dev, T0 + hour * HOUR_MS, field, n, mn, mx, total)


def test_water_use_from_flow_is_the_sum_of_the_hours_flow() -> None:
    use = water_use_per_hour([row("w", 0, "flow_l", 0, 5, 12.5, 4), row("w", 1, "flow_l", 0, 0, 0)])
    assert use[T0].litres == 12.5 and use[T0].basis == {"flow_l"}
    assert use[T0 + HOUR_MS].litres == 0.0  # read, and none used: zero, not unknown


def test_water_use_from_a_meter_total_counts_the_litres_between_hours() -> None:
    rows = [
        row("m", 0, "total_l", 100, 110, 0),
        row("m", 1, "total_l", 115, 120, 0),  # 110 -> 115 happened between the readings
        row("m", 5, "total_l", 150, 151, 0),  # after a 4-hour silence: not bridged
        row("m", 6, "total_l", 3, 4, 0),  # meter replaced: total went down
    ]
    use = water_use_per_hour(rows, {"m": (T0 - HOUR_MS, 95.0)})
    assert use[T0].litres == 15.0  # 110 - 95 (the hour before the range)
    assert use[T0 + HOUR_MS].litres == 10.0
    assert use[T0 + 5 * HOUR_MS].litres == 1.0
    assert use[T0 + 6 * HOUR_MS].litres == 1.0
    assert T0 + 2 * HOUR_MS not in use  # unknown


def test_flow_wins_over_total_and_devices_add_up() -> None:
    rows = [
        row("a", 0, "flow_l", 0, 3, 7),
        row("a", 0, "total_l", 50, 57, 0),
        row("b", 0, "total_l", 10, 12, 0),
    ]
    use = water_use_per_hour(rows)
    assert use[T0].litres == 9.0 and use[T0].basis == {"flow_l", "total_l"}
