//! trainyard's test kit: the harness shared by the integration tests (`tests/`) and the system
//! benchmark (`trainyard-bench`, `src/bin/trainyard-bench/`).
//!
//! It starts real things and cleans up after them: a `redis-server` on a free loopback port
//! ([`RedisServer`]), `trainyard node` processes ([`NodeProcess`], [`node_command`]) that it
//! waits for until they answer and stops on drop, and scratch folders ([`temp_dir`]). It reads
//! what they do from outside: `/proc` ([`procfs`]) and a node's Prometheus text ([`metrics`]).
//!
//! The kit does not depend on the trainyard library (which would make a circle with the
//! library's own tests): it runs the `trainyard` binary by path, given by its caller
//! (`env!("CARGO_BIN_EXE_trainyard")` in the tests, [`trainyard_bin`] in the bench).
//!
//! Like a test, the kit fails by panicking, with a message that says what it waited for.
//!
//! - [`ports`]: free loopback ports and names that do not collide.
//! - [`temp`]: scratch folders, swept once their process is gone.
//! - [`poll`]: polling with a deadline (never a bare sleep).
//! - [`http`]: a JSON HTTP client that returns error statuses as answers.
//! - [`redis`]: `redis-server` processes, durable or not, primaries and replicas.
//! - [`node`]: `trainyard node --config` processes.
//! - [`procfs`]: resident memory and CPU time of processes and of the machine.
//! - [`metrics`]: figures read from Prometheus text.

pub mod http;
pub mod metrics;
pub mod node;
pub mod poll;
pub mod ports;
pub mod procfs;
pub mod redis;
pub mod temp;

pub use http::{http_agent, read_json};
pub use node::{NodeProcess, node_command, trainyard_bin, wait_ready};
pub use poll::{poll, poll_child, poll_seen};
pub use ports::{free_port, unique};
pub use redis::RedisServer;
pub use temp::temp_dir;
