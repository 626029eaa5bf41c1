//! trainyard: train machine-learning models as jobs on a cluster.
//!
//! Map of the crate (see ARCHITECTURE.md for the whole picture):
//!
//! - [`training`]: the pure training library. `train(spec, dataset, device, on_progress,
//!   cancel)` trains burn networks (MLP, linear) and gradient-boosted trees on built-in or CSV
//!   data sets and returns metrics and the model as bytes; `predict` answers from those bytes.
//!   No actors, async runtime or store inside.
//! - [`cli`]: the `trainyard` command line (`train` runs one training in this process).
//!
//! Data flow of `trainyard train`: CLI args -> `TrainSpec` (validated) -> `Dataset` (built-in or
//! CSV) -> `train()` -> progress bar on the terminal -> metrics (text or JSON).

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
pub mod schedule;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod training;
