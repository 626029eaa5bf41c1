//! Hyperparameter sweeps' metrics (declared in `METRICS` beside the others): trials by
//! outcome, and how long sweeps took.

use metrics::{Unit, counter, histogram};

use super::{Kind, Metric};
use crate::store::SweepState;

pub const SWEEP_TRIALS: &str = "trainyard_sweep_trials_total";
pub const SWEEP_DURATION: &str = "trainyard_sweep_duration_seconds";

/// `SWEEP_TRIALS`, as `METRICS` lists it.
pub(super) const TRIALS: Metric = Metric {
    name: SWEEP_TRIALS,
    kind: Kind::Counter,
    unit: Unit::Count,
    labels: &["outcome"],
    help: "Trials of hyperparameter sweeps, counted by the leader: started, completed, \
           stopped_early (by ASHA at a rung), failed and revoked.",
};

/// `SWEEP_DURATION`, as `METRICS` lists it.
pub(super) const DURATION: Metric = Metric {
    name: SWEEP_DURATION,
    kind: Kind::Histogram,
    unit: Unit::Seconds,
    labels: &["state"],
    help: "Time from a sweep's creation to its end, by how it ended (SUCCESS, REVOKED).",
};

/// Outcomes of a sweep's trials (`SWEEP_TRIALS`).
pub const TRIAL_OUTCOMES: [&str; 5] =
    ["started", "completed", "stopped_early", "failed", "revoked"];

pub fn sweep_trial(outcome: &'static str) {
    counter!(SWEEP_TRIALS, "outcome" => outcome).increment(1);
}

/// A sweep ended as `state` after `seconds`.
pub fn sweep_ended(state: SweepState, seconds: f64) {
    histogram!(SWEEP_DURATION, "state" => state.as_str()).record(seconds.max(0.0));
}

/// The trial counters at zero, so they are exported before the first sweep.
pub(super) fn zeroes() {
    for outcome in TRIAL_OUTCOMES {
        counter!(SWEEP_TRIALS, "outcome" => outcome).increment(0);
    }
}
