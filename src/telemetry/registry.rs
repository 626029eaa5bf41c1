//! The model registry's and the result cache's metrics (declared in `METRICS` beside the
//! others): registrations, promotions, cache lookups, and their store operations.

use metrics::{Unit, counter};

use super::{Kind, Metric, STORE_ERRORS};

pub const MODEL_REGISTRATIONS: &str = "trainyard_model_registrations_total";
pub const CACHE_LOOKUPS: &str = "trainyard_result_cache_lookups_total";

/// `MODEL_REGISTRATIONS`, as `METRICS` lists it.
pub(super) const REGISTRATIONS: Metric = Metric {
    name: MODEL_REGISTRATIONS,
    kind: Kind::Counter,
    unit: Unit::Count,
    labels: &["source", "promoted"],
    help: "Model versions registered (source: api, schedule or sweep; promoted: a rule moved \
           its alias to it).",
};

/// `CACHE_LOOKUPS`, as `METRICS` lists it.
pub(super) const LOOKUPS: Metric = Metric {
    name: CACHE_LOOKUPS,
    kind: Kind::Counter,
    unit: Unit::Count,
    labels: &["outcome"],
    help: "Result cache lookups of \"cache\": true requests: hit (no training) or miss.",
};

/// Where a registration came from: `api` (`POST /models`), `schedule` (a schedule's
/// `register` rule, each result) or `sweep` (a sweep's, its best trial).
pub const REGISTRATION_SOURCES: [&str; 3] = ["api", "schedule", "sweep"];
/// What a lookup of the result cache found.
pub const CACHE_OUTCOMES: [&str; 2] = ["hit", "miss"];
/// The registry's and the cache's store operations (`STORE_OPS` has the others).
pub const REGISTRY_STORE_OPS: [&str; 9] = [
    "register_model",
    "registered_models",
    "registered_model",
    "set_alias",
    "delete_model_version",
    "version_artifact",
    "remember_result",
    "cached_result",
    "submit_finished",
];

/// A model version registered from `source` (in `REGISTRATION_SOURCES`); `promoted`: an
/// alias was moved to it by a rule.
pub fn model_registered(source: &'static str, promoted: bool) {
    counter!(MODEL_REGISTRATIONS, "source" => source, "promoted" => promoted.to_string())
        .increment(1);
}

/// A `"cache": true` request looked its result up: `hit` or `miss`.
pub fn cache_lookup(hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    counter!(CACHE_LOOKUPS, "outcome" => outcome).increment(1);
}

/// Starts the registry's counters at zero.
pub(super) fn zeroes(store: &'static str) {
    for source in REGISTRATION_SOURCES {
        for promoted in ["true", "false"] {
            counter!(MODEL_REGISTRATIONS, "source" => source, "promoted" => promoted).increment(0);
        }
    }
    for outcome in CACHE_OUTCOMES {
        counter!(CACHE_LOOKUPS, "outcome" => outcome).increment(0);
    }
    for op in REGISTRY_STORE_OPS {
        counter!(STORE_ERRORS, "store" => store, "op" => op).increment(0);
    }
}
