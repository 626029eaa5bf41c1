//! A running node: the store, the actors and the HTTP edge, wired from a [`Config`], with a
//! graceful stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::actors::{
    DispatcherMsg, Supervisor, SupervisorArgs, TaskSettings, local_dispatcher, recover_attempt,
};
use crate::config::Config;
use crate::http::{self, Api};
use crate::store::{
    EmbeddedStore, Instrumented, RedisStore, Store, StoreError, StoreSettings, TaskError,
};
use crate::telemetry;
use crate::training::DeviceSpec;

/// How often expired results are swept from the store.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("actors: {0}")]
    Actors(String),
}

/// Runs a node until `shutdown` resolves, then stops taking work, lets running tasks finish for
/// `tasks.shutdown_grace_s` and requeues those still running.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    telemetry::init();
    let (devices, fallback) = config
        .devices()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    if let Some(why) = fallback {
        tracing::info!("{why}");
    }
    let device_names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    let settings = StoreSettings {
        result_expires_s: config.tasks.result_expires_s,
        expired_memory_s: config.tasks.expired_memory_s,
    };
    if let Some(path) = config.store.url.strip_prefix("embedded:") {
        if !config.node.seeds.is_empty() {
            return Err(NodeError::Config("the embedded store serves one node only; a cluster (node.seeds) needs a redis:// store".into()));
        }
        let path = Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        telemetry::register_zeroes("embedded", &device_names);
        let store = Arc::new(Instrumented::new(
            EmbeddedStore::open(path, settings)?,
            "embedded",
        ));
        serve(config, devices, store, shutdown).await
    } else {
        let redis = RedisStore::connect(&config.store.url, &config.store.prefix, settings).await?;
        telemetry::register_zeroes("redis", &device_names);
        let store = Arc::new(Instrumented::new(redis, "redis"));
        store.ping().await?;
        serve(config, devices, store, shutdown).await
    }
}

async fn serve<S: Store>(
    config: Config,
    devices: Vec<DeviceSpec>,
    store: Arc<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    // One node, so it is the whole cluster and its leader.
    telemetry::membership(&config.node.name, 1, true);
    let addr: SocketAddr = config
        .http
        .listen
        .parse()
        .map_err(|e| NodeError::Config(format!("http.listen: {e}")))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let (supervisor, supervisor_done) = Actor::spawn(
        Some(format!("trainyard.supervisor.{}", config.node.name)),
        Supervisor::<S>::default(),
        SupervisorArgs {
            node: config.node.name.clone(),
            devices,
            store: store.clone(),
            settings: TaskSettings {
                time_limit_s: config.tasks.time_limit_s,
            },
        },
    )
    .await
    .map_err(|e| NodeError::Actors(e.to_string()))?;

    let sweeper = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                if let Err(e) = store.sweep().await {
                    tracing::warn!(error = %e, "cannot sweep expired tasks");
                }
            }
        })
    };

    let api = Arc::new(Api {
        store: store.clone(),
        node: config.node.name.clone(),
        queue_limit: config.tasks.queue_limit,
        max_retries: config.tasks.max_retries,
        max_body_bytes: config.http.max_body_bytes,
        max_upload_bytes: config.http.max_upload_bytes,
        token: Some(config.http.token.clone()).filter(|t| !t.is_empty()),
    });
    let bound = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    tracing::info!(http = %bound, node = %config.node.name, trainers = config.trainers.devices.len(), "node ready");
    warp::serve(http::routes(api))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;

    tracing::info!("stopping: no new work; waiting for running tasks");
    if let Some(dispatcher) = local_dispatcher() {
        let _ = dispatcher.cast(DispatcherMsg::Drain);
    }
    let deadline = Instant::now() + Duration::from_secs_f64(config.tasks.shutdown_grace_s);
    loop {
        let running = store.leases().await.map(|l| l.len()).unwrap_or(0);
        if running == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for lease in store.leases().await.unwrap_or_default() {
        let error = TaskError {
            code: "node_stopped".into(),
            message: "the node stopped while the task ran".into(),
        };
        recover_attempt(&store, &lease, error, true).await;
    }
    sweeper.abort();
    supervisor.stop(None);
    let _ = supervisor_done.await;
    tracing::info!("stopped");
    Ok(())
}
