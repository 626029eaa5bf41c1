//! Metrics: every name declared once here with its type, unit, labels and help, histogram
//! buckets set by exact name, and the Prometheus text rendered for `GET /metrics`.
//!
//! Per node: HTTP, store, trainer, process and task-outcome counters (each task event is
//! counted once, by the node where it happened, so sums over nodes are cluster totals).
//! Per cluster: `trainyard_queue_depth` is published by the leader only (`trainyard_leader`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::training::ModelType;
use crate::training::device_kind::DeviceClass;
pub use registry::{CACHE_LOOKUPS, MODEL_REGISTRATIONS, cache_lookup, model_registered};
pub use sweeps::{SWEEP_DURATION, SWEEP_TRIALS, sweep_ended, sweep_trial};

mod registry;
mod store_ops;
mod sweeps;
pub use store_ops::STORE_OPS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its full name, type, unit, label names and help text.
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

pub const TASKS_SUBMITTED: &str = "trainyard_tasks_submitted_total";
pub const TASKS_STARTED: &str = "trainyard_tasks_started_total";
pub const TASKS_SUCCEEDED: &str = "trainyard_tasks_succeeded_total";
pub const TASKS_FAILED: &str = "trainyard_tasks_failed_total";
pub const TASKS_RETRIED: &str = "trainyard_tasks_retried_total";
pub const TASKS_REVOKED: &str = "trainyard_tasks_revoked_total";
pub const QUEUE_DEPTH: &str = "trainyard_queue_depth";
pub const TASKS_RUNNING: &str = "trainyard_tasks_running";
pub const TRAINERS: &str = "trainyard_trainers";
pub const TRAINER_RESTARTS: &str = "trainyard_trainer_restarts_total";
pub const NODES_CONNECTED: &str = "trainyard_nodes_connected";
pub const LEADER: &str = "trainyard_leader";
pub const TASK_RUN: &str = "trainyard_task_run_seconds";
pub const TASK_WAIT: &str = "trainyard_task_wait_seconds";
pub const TRAINER_BUSY: &str = "trainyard_trainer_busy_seconds";
pub const SAMPLES_PER_SECOND: &str = "trainyard_training_samples_per_second";
pub const SAMPLES: &str = "trainyard_training_samples_total";
pub const EPOCHS: &str = "trainyard_training_epochs_total";
pub const HTTP_REQUESTS: &str = "trainyard_http_requests_total";
pub const HTTP_DURATION: &str = "trainyard_http_request_duration_seconds";
pub const STORE_DURATION: &str = "trainyard_store_operation_duration_seconds";
pub const STORE_ERRORS: &str = "trainyard_store_errors_total";
pub const CALLBACKS: &str = "trainyard_callbacks_total";
pub const RUNTIME_TASKS: &str = "trainyard_runtime_tasks";
pub const OPEN_STREAMS: &str = "trainyard_http_open_streams";
pub const BUILD_INFO: &str = "trainyard_build_info";
pub const SCHEDULE_DUE_TIMES: &str = "trainyard_schedule_due_times_total";
pub const CHECKPOINTS: &str = "trainyard_checkpoints_total";

/// Every trainyard metric.
pub const METRICS: &[Metric] = &[
    Metric {
        name: TASKS_SUBMITTED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["model_type"],
        help: "Tasks accepted by the API.",
    },
    Metric {
        name: TASKS_STARTED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["model_type"],
        help: "Task attempts started by a trainer.",
    },
    Metric {
        name: TASKS_SUCCEEDED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["model_type"],
        help: "Tasks that ended in SUCCESS.",
    },
    Metric {
        name: TASKS_FAILED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["model_type", "reason"],
        help: "Tasks that ended in FAILURE, by the error code of their last attempt (one of \
               FAILURE_REASONS; `other` for any code not listed).",
    },
    Metric {
        name: TASKS_RETRIED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["model_type"],
        help: "Task attempts that failed and were queued again.",
    },
    Metric {
        name: TASKS_REVOKED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["model_type"],
        help: "Tasks cancelled (REVOKED).",
    },
    Metric {
        name: QUEUE_DEPTH,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &["device_class", "priority"],
        help: "Pending tasks by the device class they ask for (any, cpu, gpu) and priority, \
               published by the leader (a cluster figure).",
    },
    Metric {
        name: TASKS_RUNNING,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &["model_type"],
        help: "Tasks running on this node's trainers, by model type.",
    },
    Metric {
        name: TRAINERS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &["state", "device"],
        help: "This node's trainers by state (idle, busy, down) and device.",
    },
    Metric {
        name: CALLBACKS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Deliveries of task ends to callback URLs: delivered, retried (a try failed), failed (given up).",
    },
    Metric {
        name: CHECKPOINTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Checkpoints of trainings: saved, too_large (over tasks.checkpoint_max_bytes, not \
               kept), fenced (the attempt no longer ran the task), failed (the store refused), \
               resumed (an attempt started from one).",
    },
    Metric {
        name: RUNTIME_TASKS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Tasks alive in the node's async runtime (connections, actors, timers). Flat while \
               the node works: it does not grow with the training tasks run.",
    },
    Metric {
        name: OPEN_STREAMS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Event streams (/events, /task/{id}/events) open on this node, each with its \
               follower task; back to where it was once their clients leave.",
    },
    Metric {
        name: TRAINER_RESTARTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["device"],
        help: "Trainers restarted after a failure.",
    },
    Metric {
        name: NODES_CONNECTED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Cluster nodes this node is connected to, itself included.",
    },
    Metric {
        name: LEADER,
        kind: Kind::Gauge,
        unit: Unit::Count,
        // No `node` label: Prometheus's target label says which node (one of ours would be
        // renamed `exported_node`).
        labels: &[],
        help: "1 on the node that dispatches (holds the leader lease), else 0.",
    },
    Metric {
        name: SCHEDULE_DUE_TIMES,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Due times of schedules, counted by the leader: fired (a task submitted), missed \
               (passed their misfire grace while no leader fired them) and skipped (missed and \
               given no task of their own).",
    },
    sweeps::TRIALS,
    sweeps::DURATION,
    registry::REGISTRATIONS,
    registry::LOOKUPS,
    Metric {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &["version"],
        help: "Always 1; the `version` label is the trainyard version the node runs.",
    },
    Metric {
        name: TASK_RUN,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: &["model_type"],
        help: "Time from a task's start to its end.",
    },
    Metric {
        name: TASK_WAIT,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: &["model_type"],
        help: "Time a task waited in the queue before it started.",
    },
    Metric {
        name: TRAINER_BUSY,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: &["device"],
        help: "Time trainers spent on tasks, by device (the sum is busy seconds).",
    },
    Metric {
        name: SAMPLES_PER_SECOND,
        kind: Kind::Gauge,
        unit: Unit::CountPerSecond,
        labels: &["device"],
        help: "Training throughput of the last model trained on each device.",
    },
    Metric {
        name: SAMPLES,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["device"],
        help: "Training rows processed (rows x epochs or trees).",
    },
    Metric {
        name: EPOCHS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["device"],
        help: "Epochs trained by burn models.",
    },
    Metric {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["route", "status"],
        help: "HTTP requests by route and status class (2xx, 4xx, 5xx).",
    },
    Metric {
        name: HTTP_DURATION,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: &["route"],
        help: "HTTP request latency by route.",
    },
    Metric {
        name: STORE_DURATION,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: &["store", "op"],
        help: "Store (Redis or embedded) operation latency.",
    },
    Metric {
        name: STORE_ERRORS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["store", "op"],
        help: "Store operations that failed.",
    },
];

/// Histogram buckets, by exact name.
fn buckets(name: &str) -> &'static [f64] {
    match name {
        TASK_RUN | TASK_WAIT | TRAINER_BUSY | SWEEP_DURATION => &[
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
        ],
        HTTP_DURATION => &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
        ],
        STORE_DURATION => &[
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 1.0,
        ],
        _ => &[0.001, 0.01, 0.1, 1.0, 10.0],
    }
}

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The installed recorder and process collector.
pub struct Telemetry {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Installs the process-wide recorder (once) and describes every metric.
pub fn init() -> &'static Telemetry {
    TELEMETRY.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for metric in METRICS.iter().filter(|m| m.kind == Kind::Histogram) {
            builder = builder
                .set_buckets_for_metric(
                    Matcher::Full(metric.name.to_string()),
                    buckets(metric.name),
                )
                .expect("bucket lists are not empty");
        }
        let handle = builder
            .install_recorder()
            .expect("the metrics recorder is installed once");
        // Histograms keep every sample until upkeep folds them into their buckets; without
        // it, a node that nobody scrapes grew by about 190 bytes a task (21 MB a minute at
        // 2,000 tasks/s).
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP);
                    upkeep.run_upkeep();
                }
            })
            .expect("the metrics upkeep thread starts");
        for m in METRICS {
            match m.kind {
                Kind::Counter => describe_counter!(m.name, m.unit, m.help),
                Kind::Gauge => describe_gauge!(m.name, m.unit, m.help),
                Kind::Histogram => describe_histogram!(m.name, m.unit, m.help),
            }
        }
        let process = metrics_process::Collector::default();
        process.describe();
        Telemetry { handle, process }
    })
}

impl Telemetry {
    /// The Prometheus text exposition of every metric, process figures freshly read.
    pub fn render(&self) -> String {
        self.process.collect();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            gauge!(RUNTIME_TASKS).set(runtime.metrics().num_alive_tasks() as f64);
        }
        self.handle.render()
    }
}

/// What happened to a task, for the task counters.
#[derive(Debug, Clone, Copy)]
pub enum TaskEvent {
    Submitted,
    Started,
    Succeeded,
    /// Failed for good, with the reason (see [`failure_reason`]).
    Failed(&'static str),
    Retried,
    Revoked,
}

/// The error codes a failed task is counted by; any other code counts as `other`.
pub const FAILURE_REASONS: [&str; 16] = [
    "invalid_spec",
    "invalid_data",
    "invalid_input",
    "invalid_model",
    "diverged",
    "time_limit",
    "device_out_of_memory",
    "device_unavailable",
    "backend_error",
    "trainer_crashed",
    "trainer_lost",
    "trainer_busy",
    "lease_expired",
    "node_restarted",
    "node_stopped",
    "other",
];

/// The `reason` label of a task failed with error `code`: a bounded set of values.
pub fn failure_reason(code: &str) -> &'static str {
    FAILURE_REASONS
        .iter()
        .find(|reason| **reason == code)
        .copied()
        .unwrap_or("other")
}

pub fn task_event(event: TaskEvent, model_type: ModelType) {
    let name = match event {
        TaskEvent::Submitted => TASKS_SUBMITTED,
        TaskEvent::Started => TASKS_STARTED,
        TaskEvent::Succeeded => TASKS_SUCCEEDED,
        TaskEvent::Failed(reason) => {
            counter!(TASKS_FAILED, "model_type" => model_type.as_str(), "reason" => reason)
                .increment(1);
            return;
        }
        TaskEvent::Retried => TASKS_RETRIED,
        TaskEvent::Revoked => TASKS_REVOKED,
    };
    counter!(name, "model_type" => model_type.as_str()).increment(1);
}

pub fn task_waited(model_type: ModelType, seconds: f64) {
    histogram!(TASK_WAIT, "model_type" => model_type.as_str()).record(seconds.max(0.0));
}

/// A task ran `seconds` on a trainer on `device`.
pub fn task_ran(model_type: ModelType, device: &str, seconds: f64) {
    histogram!(TASK_RUN, "model_type" => model_type.as_str()).record(seconds.max(0.0));
    histogram!(TRAINER_BUSY, "device" => device.to_string()).record(seconds.max(0.0));
}

/// A model trained on `device`: `rows x iterations` samples at `samples_per_s`.
pub fn trained(device: &str, samples: f64, samples_per_s: f64, epochs: u64) {
    let device = device.to_string();
    gauge!(SAMPLES_PER_SECOND, "device" => device.clone()).set(samples_per_s);
    counter!(SAMPLES, "device" => device.clone()).increment(samples as u64);
    counter!(EPOCHS, "device" => device).increment(epochs);
}

/// The cluster's queue, by device class and priority (published by the leader).
pub fn queue_depth(depths: &[[u64; 10]; DeviceClass::ALL.len()]) {
    for (class, by_priority) in DeviceClass::ALL.iter().zip(depths) {
        for (priority, depth) in by_priority.iter().enumerate() {
            gauge!(QUEUE_DEPTH, "device_class" => class.as_str(), "priority" => PRIORITIES[priority])
                .set(*depth as f64);
        }
    }
}

/// Priorities as label values.
const PRIORITIES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// This node's trainers: `(device, state)` of each.
pub fn trainers(states: &[(String, &'static str)]) {
    let devices: std::collections::BTreeSet<&str> =
        states.iter().map(|(d, _)| d.as_str()).collect();
    for device in devices {
        for state in ["idle", "busy", "down"] {
            let n = states
                .iter()
                .filter(|(d, s)| d == device && *s == state)
                .count();
            gauge!(TRAINERS, "state" => state, "device" => device.to_string()).set(n as f64);
        }
    }
}

/// A trainer of this node started (`true`) or ended (`false`) a task.
pub fn task_running(model_type: ModelType, running: bool) {
    let delta = if running { 1.0 } else { -1.0 };
    gauge!(TASKS_RUNNING, "model_type" => model_type.as_str()).increment(delta);
}

/// Outcomes of a schedule's due times.
pub const SCHEDULE_OUTCOMES: [&str; 3] = ["fired", "missed", "skipped"];

/// A schedule's step: `fired` tasks submitted for `due_times` due times, `late` if they were past
/// their misfire grace.
pub fn schedule_step(fired: bool, due_times: u64, late: bool) {
    if fired {
        counter!(SCHEDULE_DUE_TIMES, "outcome" => "fired").increment(1);
    }
    if late {
        counter!(SCHEDULE_DUE_TIMES, "outcome" => "missed").increment(due_times);
    }
    let skipped = if fired {
        due_times.saturating_sub(1)
    } else {
        due_times
    };
    if skipped > 0 {
        counter!(SCHEDULE_DUE_TIMES, "outcome" => "skipped").increment(skipped);
    }
}

/// Outcomes of a callback delivery try.
pub const CALLBACK_OUTCOMES: [&str; 3] = ["delivered", "retried", "failed"];

pub fn callback(outcome: &'static str) {
    counter!(CALLBACKS, "outcome" => outcome).increment(1);
}

/// Outcomes of a checkpoint (`CHECKPOINTS`).
pub const CHECKPOINT_OUTCOMES: [&str; 5] = ["saved", "too_large", "fenced", "failed", "resumed"];

pub fn checkpoint(outcome: &'static str) {
    counter!(CHECKPOINTS, "outcome" => outcome).increment(1);
}

/// Starts every fixed-label counter and gauge at zero, so rates and sums answer 0, not
/// nothing, before the first event.
pub fn register_zeroes(store: &'static str, devices: &[String]) {
    for model in ModelType::NAMES {
        for name in [
            TASKS_SUBMITTED,
            TASKS_STARTED,
            TASKS_SUCCEEDED,
            TASKS_RETRIED,
            TASKS_REVOKED,
        ] {
            counter!(name, "model_type" => model).increment(0);
        }
        for reason in FAILURE_REASONS {
            counter!(TASKS_FAILED, "model_type" => model, "reason" => reason).increment(0);
        }
        gauge!(TASKS_RUNNING, "model_type" => model).increment(0.0);
    }
    for device in devices {
        counter!(TRAINER_RESTARTS, "device" => device.clone()).increment(0);
        counter!(SAMPLES, "device" => device.clone()).increment(0);
        counter!(EPOCHS, "device" => device.clone()).increment(0);
    }
    for op in STORE_OPS {
        counter!(STORE_ERRORS, "store" => store, "op" => op).increment(0);
    }
    for outcome in CALLBACK_OUTCOMES {
        counter!(CALLBACKS, "outcome" => outcome).increment(0);
    }
    for outcome in SCHEDULE_OUTCOMES {
        counter!(SCHEDULE_DUE_TIMES, "outcome" => outcome).increment(0);
    }
    for outcome in CHECKPOINT_OUTCOMES {
        counter!(CHECKPOINTS, "outcome" => outcome).increment(0);
    }
    sweeps::zeroes();
    registry::zeroes(store);
    gauge!(OPEN_STREAMS).increment(0.0);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

pub fn trainer_restarted(device: &str) {
    counter!(TRAINER_RESTARTS, "device" => device.to_string()).increment(1);
}

/// This node's view of the cluster. A node that does not lead publishes no queue depth: its
/// last figures from when it led are zeroed, so that sums over nodes count the queue once.
pub fn membership(connected: usize, leader: bool) {
    gauge!(NODES_CONNECTED).set(connected as f64);
    gauge!(LEADER).set(if leader { 1.0 } else { 0.0 });
    if !leader {
        queue_depth(&Default::default());
    }
}

/// Event streams open on this node (each with its follower task).
pub fn open_streams(open: usize) {
    gauge!(OPEN_STREAMS).set(open as f64);
}

pub fn http_request(route: &'static str, status: u16, elapsed: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(HTTP_REQUESTS, "route" => route, "status" => class).increment(1);
    histogram!(HTTP_DURATION, "route" => route).record(elapsed.as_secs_f64());
}

pub fn store_operation(store: &'static str, op: &'static str, elapsed: Duration, failed: bool) {
    histogram!(STORE_DURATION, "store" => store, "op" => op).record(elapsed.as_secs_f64());
    if failed {
        counter!(STORE_ERRORS, "store" => store, "op" => op).increment(1);
    }
}

#[cfg(test)]
mod tests;
