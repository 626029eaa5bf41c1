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
    self, Faults, Stop, Supervisor, SupervisorArgs, TaskSettings, recover_attempt,
};
use crate::cluster::{self, Membership};
use crate::config::Config;
use crate::http::{self, Api};
use crate::store::{
    EmbeddedStore, Instrumented, NODE_STALE_S, NodeInfo, RedisStore, RedisTls, Store, StoreError,
    StoreSettings, TaskError, TrainerSeat, now_s,
};
use crate::telemetry;
use crate::training::DeviceSpec;

/// How often expired results are swept from the store, and the node announces itself.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

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
    crate::tls::init();
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
        history_after_end_s: config.tasks.history_after_end_s,
        lease_s: config.tasks.lease_s,
        min_replicas_ack: config.store.min_replicas_ack,
        replica_ack_timeout_s: config.store.replica_ack_timeout_s,
        dataset_max_total_bytes: config.datasets.max_total_bytes,
        dataset_expires_s: config.datasets.expires_s,
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
        let membership = Membership::alone(&config.node.name);
        serve(config, devices, store, membership, shutdown).await
    } else {
        let optional =
            |path: &str| Some(std::path::PathBuf::from(path)).filter(|_| !path.is_empty());
        let tls = RedisTls {
            ca: optional(&config.store.tls_ca),
            client: optional(&config.store.tls_client_cert)
                .zip(optional(&config.store.tls_client_key)),
        };
        let redis =
            RedisStore::connect_tls(&config.store.url, &config.store.prefix, settings, &tls)
                .await?;
        telemetry::register_zeroes("redis", &device_names);
        let store = Arc::new(Instrumented::new(redis, "redis"));
        // Connecting talked to Redis already; a primary short of the replicas that
        // `min_replicas_ack` needs is not ready (`/readyz` says why) but still starts.
        let tls = if config.node.tls_cert.is_empty() {
            None
        } else {
            let (cert, key, ca) = (
                Path::new(&config.node.tls_cert),
                Path::new(&config.node.tls_key),
                Path::new(&config.node.tls_ca),
            );
            Some(cluster::ClusterTls {
                server: crate::tls::server_config(cert, key, Some(ca), &[])
                    .map_err(|e| NodeError::Config(format!("node.tls_cert: {e}")))?,
                client: crate::tls::client_config(ca, Some((cert, key)))
                    .map_err(|e| NodeError::Config(format!("node.tls_cert: {e}")))?,
            })
        };
        let membership = cluster::start(
            &config.node.name,
            &config.node.listen,
            &config.node.advertise,
            &config.node.cookie,
            &config.node.seeds,
            tls,
        )
        .await
        .map_err(NodeError::Config)?;
        serve(config, devices, store, membership, shutdown).await
    }
}

async fn serve<S: Store>(
    config: Config,
    devices: Vec<DeviceSpec>,
    store: Arc<S>,
    membership: Arc<Membership>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let node = config.node.name.clone();
    // The stop, as the HTTP edge, the actors and the node's own wind-down see it.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let addr: SocketAddr = config
        .http
        .listen
        .parse()
        .map_err(|e| NodeError::Config(format!("http.listen: {e}")))?;
    let https = if config.http.tls_cert.is_empty() {
        None
    } else {
        let (cert, key) = (
            Path::new(&config.http.tls_cert),
            Path::new(&config.http.tls_key),
        );
        Some(
            crate::tls::server_config(cert, key, None, &[b"h2", b"http/1.1"])
                .map_err(|e| NodeError::Config(format!("http.tls_cert: {e}")))?,
        )
    };
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
            devices: devices.clone(),
            store: store.clone(),
            settings: TaskSettings {
                time_limit_s: config.tasks.time_limit_s,
                hard_time_limit_grace_s: config.tasks.hard_time_limit_grace_s,
                lease_s: config.tasks.lease_s,
                retry_backoff_s: config.tasks.retry_backoff_s,
                retry_backoff_max_s: config.tasks.retry_backoff_max_s,
                claim_ahead_under_s: config.tasks.claim_ahead_under_s,
                checkpoint_every_s: config.tasks.checkpoint_every_s,
                checkpoint_max_bytes: config.tasks.checkpoint_max_bytes,
            },
            membership: membership.clone(),
            stop: Stop::new(stop_rx.clone()),
            faults: Faults::from_env(),
        },
    )
    .await
    .map_err(|e| NodeError::Actors(e.to_string()))?;

    let bound = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let mut info = NodeInfo {
        name: node.clone(),
        http: bound.to_string(),
        cluster: membership.address().to_string(),
        trainers: devices
            .iter()
            .enumerate()
            .map(|(i, device)| TrainerSeat {
                name: actors::trainer_name(&node, device, i),
                device: device.to_string(),
            })
            .collect(),
        started_at: now_s(),
        seen_at: now_s(),
        draining: false,
    };
    let housekeeping = {
        let (store, membership, info) = (store.clone(), membership.clone(), info.clone());
        tokio::spawn(housekeeping(store, membership, info))
    };

    let notify_settings = crate::notify::NotifySettings::from_config(&config.notifications)
        .map_err(NodeError::Config)?;
    let api = Arc::new(Api {
        store: store.clone(),
        node: config.node.name.clone(),
        queue_limit: config.tasks.queue_limit,
        bounds: http::TaskBounds::of(&config.tasks),
        max_body_bytes: config.http.max_body_bytes,
        max_upload_bytes: config.http.max_upload_bytes,
        auth: Arc::new(crate::http::auth::AuthSettings::from_section(&config.http)),
        membership: membership.clone(),
        result_expires_s: config.tasks.result_expires_s,
        limits: http::limits::Limits::new(http::limits::LimitSettings {
            rate_per_s: config.http.rate_limit_per_s,
            burst: config.http.rate_limit_burst,
            max_in_flight: config.http.max_in_flight_per_client,
            max_streams_per_client: config.http.max_streams_per_client,
            max_streams: config.http.max_streams,
            trusted_proxies: config
                .http
                .trusted_proxies()
                .map_err(|e| NodeError::Config(e.to_string()))?,
        }),
        max_schedules: config.tasks.max_schedules,
        max_sweeps: config.tasks.max_sweeps,
        max_batch: config.tasks.max_batch,
        callback_rules: notify_settings.rules.clone(),
        health: Default::default(),
        model_cache: http::model_cache::ModelCache::new(config.tasks.model_cache_bytes),
        body_budget: http::budget::BodyBudget::new(config.http.max_body_bytes_in_flight),
        stopping: stop_rx.clone(),
    });
    let notifier = tokio::spawn(crate::notify::run(store.clone(), notify_settings));
    if config.http.open_off_loopback() {
        tracing::warn!(
            http = %bound,
            "the API is open: no token is set and http.allow_unauthenticated = true; anyone \
             who can reach {bound} may train, purge and drain"
        );
    }
    tracing::info!(http = %bound, https = https.is_some(), node = %config.node.name, trainers = config.trainers.devices.len(), "node ready");
    let stopped = async move {
        let _ = stop_rx.wait_for(|stopping| *stopping).await;
    };
    match https {
        None => {
            warp::serve(http::routes(api))
                .incoming(listener)
                .graceful(stopped)
                .run()
                .await
        }
        Some(tls) => {
            let service =
                hyper_util::service::TowerToHyperService::new(warp::service(http::routes(api)));
            http::tls::serve(listener, tls, service, stopped).await
        }
    }

    tracing::info!("stopping: no new work; waiting for running tasks");
    housekeeping.abort();
    // Announced as draining from now on: the announcement's flag says the node stops; an
    // operator's drain is the store's drain flag alone.
    info.draining = true;
    info.seen_at = now_s();
    if let Err(e) = store.announce(&info).await {
        tracing::warn!(error = %e, "cannot announce that this node drains");
    }
    let ours = async || -> Vec<_> {
        let leases = store.leases().await.unwrap_or_default();
        leases.into_iter().filter(|l| l.node() == node).collect()
    };
    let deadline = Instant::now() + Duration::from_secs_f64(config.tasks.shutdown_grace_s);
    while !ours().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for lease in ours().await {
        let error = TaskError {
            code: "node_stopped".into(),
            message: "the node stopped while the task ran".into(),
        };
        recover_attempt(&store, &lease, error, true, 0.0).await;
    }
    notifier.abort();
    membership.leave();
    supervisor.stop(None);
    let _ = supervisor_done.await;
    tracing::info!("stopped");
    Ok(())
}

/// Rounds of housekeeping (seconds) between two looks for expired sweeps.
const SWEEPS_EXPIRY_EVERY: u64 = 60;
/// Rounds between two reads of the other nodes' cluster addresses, once all are connected.
const KNOWN_EVERY: u64 = 10;

/// Every second: announce the node in the store, publish membership gauges, and sweep expired
/// results (and, once a minute, forget expired hyperparameter sweeps).
async fn housekeeping<S: Store>(store: Arc<S>, membership: Arc<Membership>, mut info: NodeInfo) {
    for round in 0u64.. {
        if round % SWEEPS_EXPIRY_EVERY == 0
            && let Err(e) = crate::sweeps::forget_expired(&*store).await
        {
            tracing::warn!(error = %e, "cannot forget expired sweeps");
        }
        info.seen_at = now_s();
        if let Err(e) = store.announce(&info).await {
            tracing::warn!(error = %e, "cannot announce this node");
        }
        // Every node reads every announcement: each second for the first KNOWN_EVERY rounds and
        // while one has no session with this node (the cluster forms), else every KNOWN_EVERY.
        if membership.dials_known()
            && (round % KNOWN_EVERY == 0 || round < KNOWN_EVERY || membership.misses_known())
            && let Ok(nodes) = store.nodes().await
        {
            let now = now_s();
            let peers = nodes
                .into_iter()
                .filter(|n| n.name != membership.name() && now - n.seen_at < NODE_STALE_S);
            membership.set_known(peers.map(|n| n.cluster).collect());
        }
        let leader = store.leader().await.ok().flatten();
        let peers = membership.connected().len();
        telemetry::membership(peers + 1, leader.as_deref() == Some(membership.name()));
        if let Err(e) = crate::store::sweep_expired(&*store).await {
            tracing::warn!(error = %e, "cannot sweep expired tasks");
        }
        tokio::time::sleep(HOUSEKEEPING_EVERY).await;
    }
}
