//! trainyard: train machine-learning models as jobs on a cluster.
//!
//! Map of the crate, lowest layer first (see ARCHITECTURE.md for the whole picture). No module
//! imports one above it.
//!
//! - [`training`]: the pure training library. `train(spec, dataset, device, on_progress,
//!   cancel)` trains burn networks (MLP, linear) and gradient-boosted trees on built-in or CSV
//!   data sets and returns metrics and the model as bytes; `predict` answers from those bytes.
//!   No actors, async runtime or store inside.
//! - [`telemetry`]: every metric, declared once. [`tls`]: PEM files into rustls configurations.
//! - [`cache`]: a small cache of parsed data sets.
//! - [`store`]: durable task state, split by role, on Redis or an embedded redb file.
//! - [`registry`]: what registering a task's model is, and when a rule promotes it.
//! - [`schedule`]: cron schedules, fired by the leader. [`cluster`]: node membership over
//!   ractor_cluster, and addresses as people write them.
//! - [`actors`]: the Supervisor, the Dispatcher and the Trainers of a node.
//! - [`config`]: the node's typed configuration. [`logging`]: its log, text or JSON.
//! - [`notify`]: completion webhooks.
//! - [`api`]: the HTTP API's request and response types and its OpenAPI document.
//! - [`http`]: the REST API, the panel, event streams and health.
//! - [`node`]: wires one node and stops it.
//! - [`client`]: the command line's HTTP verbs. [`cli`]: the `trainyard` command line.
//!
//! Data flow of a submission: `http` (route table, guard, `api::TrainRequest`) -> `store`
//! (stored and queued) -> `actors` (the leader's dispatcher claims it for a trainer, which runs
//! `training::train` and writes the end) -> `store` -> `http` (result, events).

pub mod actors;
pub mod api;
pub mod cache;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod http;
pub mod logging;
pub mod node;
pub mod notify;
pub mod registry;
pub mod schedule;
pub mod store;
pub mod sweeps;
pub mod telemetry;
pub mod tls;
pub mod training;
