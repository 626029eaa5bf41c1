//! The Redis store's connection: to one address (`redis://`), or to the primary that Redis
//! Sentinel names (`redis+sentinel://`), followed to the new primary after a failover. With
//! `min_replicas_ack`, a write the store acknowledges (a submission, a result) is first on that
//! many replicas (`WAIT`), so it outlives the primary. `WAIT` holds up every later command on
//! its connection, so those writes go through connections of their own, not the shared one
//! that renews leases.

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use ::redis::{Client, Cmd, ConnectionAddr, RedisConnectionInfo, RedisFuture, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use super::StoreError;

/// How often a node asks the sentinels which Redis is the primary.
const SENTINEL_POLL: Duration = Duration::from_millis(500);
/// How long a connection to Redis may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections for writes that wait for replicas, taken in turn: one write's wait holds up
/// only the writes behind it on its own connection.
const ACKED_CONNECTIONS: usize = 16;

/// TLS settings of a `rediss://` store: whom to trust, and the certificate to show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisTls {
    /// PEM file of the CA that signed the server's certificate; None: the system's CAs.
    pub ca: Option<std::path::PathBuf>,
    /// PEM files of a client certificate and its key, for a Redis that asks for one.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl RedisTls {
    /// A client of `url` (`rediss://` or `redis://`), trusting and showing what `self` names.
    fn client(&self, url: &str) -> Result<Client, StoreError> {
        if self.ca.is_none() && self.client.is_none() {
            return Ok(Client::open(url)?);
        }
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                StoreError::Unavailable(format!("cannot read {}: {e}", path.display()))
            })
        };
        let root_cert = self.ca.as_deref().map(read).transpose()?;
        let client_tls = match &self.client {
            Some((cert, key)) => Some(::redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            None => None,
        };
        Ok(Client::build_with_tls(
            url,
            ::redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )?)
    }
}

/// Where the store's Redis is, as `[store] url` says.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `redis://[user:password@]HOST:PORT/DB`: one Redis (`rediss://`: over TLS).
    Direct(String),
    /// `redis+sentinel://[user:password@]HOST:PORT,HOST:PORT/SERVICE[/DB]`: the primary that
    /// the sentinels at these addresses name for SERVICE. The user and password are the Redis
    /// nodes' (the sentinels take none).
    Sentinel {
        sentinels: Vec<String>,
        service: String,
        db: i64,
        user: Option<String>,
        password: Option<String>,
    },
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Target::Direct(url.to_string()));
        }
        let rest = url.strip_prefix("redis+sentinel://").ok_or_else(|| {
            format!("{url:?} must start with redis://, rediss:// or redis+sentinel://")
        })?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (user, password) = match auth.map(|a| a.split_once(':').unwrap_or(("", a))) {
            Some((user, password)) => (
                Some(user).filter(|u| !u.is_empty()).map(String::from),
                Some(password).filter(|p| !p.is_empty()).map(String::from),
            ),
            None => (None, None),
        };
        let mut parts = rest.split('/');
        let hosts = parts.next().unwrap_or_default();
        let service = parts.next().unwrap_or_default().to_string();
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(db) => db
                .parse::<i64>()
                .map_err(|_| format!("{url:?}: database {db:?} is not a number"))?,
            None => 0,
        };
        if parts.next().is_some() {
            return Err(format!(
                "{url:?} must look like redis+sentinel://HOST:PORT,HOST:PORT/SERVICE/DB"
            ));
        }
        if service.is_empty() {
            return Err(format!("{url:?} names no service (…/mymaster/0)"));
        }
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| format!("{url:?}: sentinel {host:?} needs HOST:PORT"))?;
            if name.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("{url:?}: sentinel {host:?} needs HOST:PORT"));
            }
            sentinels.push(format!("redis://{host}/"));
        }
        Ok(Target::Sentinel {
            sentinels,
            service,
            db,
            user,
            password,
        })
    }
}

/// How many replicas must confirm a write before the store acknowledges it, and for how long
/// it waits for them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaAck {
    pub replicas: usize,
    pub timeout: Duration,
}

/// The connection every command of a Redis store goes through. Clones share one connection
/// (multiplexed, reconnecting by itself), which the sentinel watcher replaces when the
/// primary moves.
#[derive(Clone)]
pub struct Link {
    shared: Arc<Shared>,
}

struct Shared {
    current: RwLock<Current>,
    /// Bumped each time the connection moves to another primary.
    generation: AtomicU64,
    ack: Option<ReplicaAck>,
    /// Which of the acknowledged-write connections the next writer takes.
    turn: AtomicU64,
}

struct Current {
    client: Client,
    con: ConnectionManager,
    /// With `ack`: the connections of writes that wait for replicas.
    acked: Vec<ConnectionManager>,
}

impl Current {
    async fn open(client: Client, ack: Option<ReplicaAck>) -> Result<Current, StoreError> {
        let con = manager(&client, None).await?;
        let mut acked = Vec::new();
        if let Some(ack) = ack {
            for _ in 0..ACKED_CONNECTIONS {
                acked.push(manager(&client, Some(ack.timeout)).await?);
            }
        }
        Ok(Current { client, con, acked })
    }
}

/// A connection for one write that is acknowledged only once it is on the replicas asked
/// for: write through it, then call [`Writer::replicated`].
pub struct Writer {
    con: ConnectionManager,
    ack: Option<ReplicaAck>,
}

impl Writer {
    /// Waits until the writes made through this writer are on the replicas
    /// `min_replicas_ack` asks for; refuses to acknowledge `what` otherwise.
    pub async fn replicated(&mut self, what: impl FnOnce() -> String) -> Result<(), StoreError> {
        let Some(ack) = self.ack else {
            return Ok(());
        };
        let acked: usize = ::redis::cmd("WAIT")
            .arg(ack.replicas)
            .arg(ack.timeout.as_millis() as u64)
            .query_async(&mut self.con)
            .await?;
        if acked < ack.replicas {
            return Err(StoreError::Unavailable(format!(
                "{} is on the Redis primary, but {acked} of the {} replicas it needs confirmed \
                 it within {:.1} s (store.min_replicas_ack)",
                what(),
                ack.replicas,
                ack.timeout.as_secs_f64()
            )));
        }
        Ok(())
    }
}

impl ConnectionLike for Writer {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.con.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.con.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.con.get_db()
    }
}

/// A link that does not keep its store alive: background tasks hold this.
#[derive(Clone)]
pub struct WeakLink(Weak<Shared>);

impl WeakLink {
    pub fn upgrade(&self) -> Option<Link> {
        self.0.upgrade().map(|shared| Link { shared })
    }
}

/// A connection to `client`'s Redis; `wait`: one that may be held up that long by `WAIT`
/// (longer than the usual answer time).
async fn manager(client: &Client, wait: Option<Duration>) -> Result<ConnectionManager, StoreError> {
    let mut config = ConnectionManagerConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT));
    if let Some(wait) = wait {
        config = config.set_response_timeout(Some(wait + Duration::from_secs(1)));
    }
    Ok(client.get_connection_manager_with_config(config).await?)
}

/// Asks the sentinels for the primary of their service.
struct Watcher {
    sentinel: Sentinel,
    service: String,
    node: SentinelNodeConnectionInfo,
}

impl Watcher {
    async fn primary(&mut self) -> Result<Client, StoreError> {
        Ok(self
            .sentinel
            .async_master_for(&self.service, Some(&self.node))
            .await?)
    }
}

impl Link {
    /// Connects to `target`; for Sentinel, to the primary it names now, then follows it.
    pub async fn open(
        target: &Target,
        ack: Option<ReplicaAck>,
        tls: &RedisTls,
    ) -> Result<Link, StoreError> {
        let (client, watcher) = match target {
            Target::Direct(url) => (tls.client(url)?, None),
            Target::Sentinel {
                sentinels,
                service,
                db,
                user,
                password,
            } => {
                let mut redis = RedisConnectionInfo::default().set_db(*db);
                if let Some(user) = user {
                    redis = redis.set_username(user);
                }
                if let Some(password) = password {
                    redis = redis.set_password(password);
                }
                let mut watcher = Watcher {
                    sentinel: Sentinel::build(sentinels.clone())?,
                    service: service.clone(),
                    node: SentinelNodeConnectionInfo::default().set_redis_connection_info(redis),
                };
                (watcher.primary().await?, Some(watcher))
            }
        };
        let ack = ack.filter(|a| a.replicas > 0);
        let current = Current::open(client, ack).await?;
        let link = Link {
            shared: Arc::new(Shared {
                current: RwLock::new(current),
                generation: AtomicU64::new(0),
                ack,
                turn: AtomicU64::new(0),
            }),
        };
        if let Some(watcher) = watcher {
            tokio::spawn(follow_primary(link.downgrade(), watcher));
        }
        Ok(link)
    }

    pub fn downgrade(&self) -> WeakLink {
        WeakLink(Arc::downgrade(&self.shared))
    }

    /// A client of the Redis this link talks to now, for connections of their own (a
    /// blocking read).
    pub fn client(&self) -> Client {
        self.shared
            .current
            .read()
            .expect("link lock")
            .client
            .clone()
    }

    /// Changes each time the link moves to another primary.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    fn con(&self) -> ConnectionManager {
        self.shared.current.read().expect("link lock").con.clone()
    }

    /// The connection for a write acknowledged once on replicas (the shared one when
    /// `min_replicas_ack` is 0).
    pub fn writer(&self) -> Writer {
        let current = self.shared.current.read().expect("link lock");
        let con = if current.acked.is_empty() {
            current.con.clone()
        } else {
            let turn = self.shared.turn.fetch_add(1, Ordering::Relaxed) as usize;
            current.acked[turn % current.acked.len()].clone()
        };
        Writer {
            con,
            ack: self.shared.ack,
        }
    }

    /// Moves the link to `client`'s Redis unless it talks to it already; true if it moved.
    async fn move_to(&self, client: Client) -> Result<bool, StoreError> {
        if same_address(&self.client(), &client) {
            return Ok(false);
        }
        let current = Current::open(client, self.shared.ack).await?;
        *self.shared.current.write().expect("link lock") = current;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }
}

fn same_address(a: &Client, b: &Client) -> bool {
    let addr = |c: &Client| -> Option<(String, u16)> {
        match c.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
            _ => None,
        }
    };
    addr(a).is_some() && addr(a) == addr(b)
}

/// Asks the sentinels which Redis is the primary, every `SENTINEL_POLL`, and moves the link
/// there when it changes; ends with the link's store.
async fn follow_primary(link: WeakLink, mut watcher: Watcher) {
    loop {
        tokio::time::sleep(SENTINEL_POLL).await;
        let Some(link) = link.upgrade() else { return };
        let moved = match watcher.primary().await {
            Ok(client) => {
                let address = client.get_connection_info().addr().to_string();
                link.move_to(client).await.map(|moved| (moved, address))
            }
            Err(e) => Err(e),
        };
        match moved {
            Ok((true, address)) => {
                tracing::warn!(primary = %address, "the Redis primary moved; the store follows it")
            }
            Ok((false, _)) => {}
            Err(e) => tracing::debug!(error = %e, "cannot ask the sentinels for the primary"),
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut con = self.con();
        Box::pin(async move { con.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut con = self.con();
        Box::pin(async move { con.req_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.con().get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse_into_sentinels_service_and_database() {
        assert_eq!(
            Target::parse("redis+sentinel://a:26379,b:26380/mymaster/2").unwrap(),
            Target::Sentinel {
                sentinels: vec!["redis://a:26379/".into(), "redis://b:26380/".into()],
                service: "mymaster".into(),
                db: 2,
                user: None,
                password: None,
            }
        );
        let Target::Sentinel {
            db, user, password, ..
        } = Target::parse("redis+sentinel://:s3cret@a:26379/mymaster").unwrap()
        else {
            panic!("not a sentinel target")
        };
        assert_eq!((db, user, password), (0, None, Some("s3cret".into())));
        assert_eq!(
            Target::parse("redis://h:6379/1").unwrap(),
            Target::Direct("redis://h:6379/1".into())
        );
        for bad in [
            "redis+sentinel://a:26379",
            "redis+sentinel://a/mymaster",
            "redis+sentinel://a:26379/mymaster/x",
            "redis+sentinel://a:26379/mymaster/0/extra",
            "http://a:26379/mymaster",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
