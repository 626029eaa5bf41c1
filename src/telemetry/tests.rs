//! The recorder as Prometheus reads it: what the helpers set, in the exposition text.

use super::*;

/// The value of the series `series` (name and labels as exposed), if exposed.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_node_that_stops_leading_zeroes_the_queue_it_published() {
    let telemetry = init();
    let mut depths = [[0u64; 10]; DeviceClass::ALL.len()];
    depths[1][5] = 3;
    queue_depth(&depths);
    membership(1, true);
    let text = telemetry.render();
    let series = r#"trainyard_queue_depth{device_class="cpu",priority="5"}"#;
    assert_eq!(value(&text, series), Some(3.0), "{text}");
    assert_eq!(value(&text, "trainyard_leader"), Some(1.0));
    membership(1, false);
    let text = telemetry.render();
    assert_eq!(value(&text, series), Some(0.0), "{text}");
    assert_eq!(value(&text, "trainyard_leader"), Some(0.0));
}

#[test]
fn schedule_due_times_are_counted_fired_missed_and_skipped() {
    let telemetry = init();
    let read = |outcome: &str| {
        let series = format!("trainyard_schedule_due_times_total{{outcome=\"{outcome}\"}}");
        value(&telemetry.render(), &series).unwrap_or(0.0)
    };
    let before = [read("fired"), read("missed"), read("skipped")];
    // On time; 3 missed and caught up by one task; 2 missed and skipped.
    schedule_step(true, 1, false);
    schedule_step(true, 3, true);
    schedule_step(false, 2, true);
    let after = [read("fired"), read("missed"), read("skipped")];
    assert_eq!(after[0] - before[0], 2.0);
    assert_eq!(after[1] - before[1], 5.0);
    assert_eq!(after[2] - before[2], 4.0);
}

#[test]
fn failure_reasons_are_a_fixed_set() {
    assert_eq!(failure_reason("time_limit"), "time_limit");
    assert_eq!(failure_reason("invalid_data"), "invalid_data");
    assert_eq!(failure_reason("anything else"), "other");
    let mut sorted = FAILURE_REASONS.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), FAILURE_REASONS.len());
}
