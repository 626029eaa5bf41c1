//! What the nodes share (`lead.lua` for the leader lease): the [`ClusterState`] role; and what
//! a store checks of its Redis: durability at start, its clock, its replicas.

use super::super::link::WeakLink;
use super::*;

/// Refuses a Redis whose `maxmemory-policy` evicts keys (it would drop queued tasks in
/// silence), and warns when neither an append-only file nor a replica keeps accepted tasks.
pub(super) async fn check_durability(
    con: &mut Link,
    min_replicas_ack: usize,
) -> Result<(), StoreError> {
    let setting = async |con: &mut Link, name: &str| -> Result<String, StoreError> {
        let pair: Vec<String> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(con)
            .await?;
        Ok(pair.get(1).cloned().unwrap_or_default())
    };
    let policy = setting(con, "maxmemory-policy").await?;
    if policy != "noeviction" {
        return Err(StoreError::Unavailable(format!(
            "Redis evicts keys (maxmemory-policy {policy}), which would drop queued tasks in \
             silence: set maxmemory-policy noeviction (config/redis.conf does)"
        )));
    }
    let aof = setting(con, "appendonly").await?;
    let info: String = ::redis::cmd("INFO")
        .arg("replication")
        .query_async(con)
        .await?;
    let replicas = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if replicas < min_replicas_ack as u32 {
        tracing::warn!(
            replicas,
            min_replicas_ack,
            "Redis has fewer replicas than store.min_replicas_ack: submissions and results are \
             refused until enough replicas connect"
        );
    }
    if aof != "yes" && replicas == 0 {
        tracing::warn!(
            "Redis keeps no append-only file and has no replica: a Redis restart loses every \
             accepted task (set appendonly yes, as config/redis.conf does)"
        );
    }
    Ok(())
}

/// How often the node measures again how far Redis's clock is from its own.
const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(2);

/// Measures Redis's clock (`TIME`) against this host's, taking the middle of the round trip,
/// and makes it the clock of every time kept in the store (see [`now_s`]).
pub(super) async fn sync_clock(con: &mut Link) -> Result<(), StoreError> {
    let before = local_now_s();
    let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query_async(con).await?;
    let after = local_now_s();
    let redis = secs as f64 + micros as f64 / 1e6;
    set_clock_offset(redis - (before + after) / 2.0);
    Ok(())
}

/// Measures the store's clock again every `CLOCK_SYNC_EVERY`, while the store lives.
pub(super) async fn keep_clock(link: WeakLink) {
    loop {
        tokio::time::sleep(CLOCK_SYNC_EVERY).await;
        let Some(mut link) = link.upgrade() else {
            return;
        };
        if let Err(e) = sync_clock(&mut link).await {
            tracing::debug!(error = %e, "cannot read the store's clock");
        }
    }
}

impl ClusterState for RedisStore {
    async fn lead(&self, node: &str, ttl_s: f64) -> Result<bool, StoreError> {
        let ttl_ms = (ttl_s * 1000.0).ceil().max(1.0) as u64;
        let held: i64 = self
            .scripts
            .lead
            .key(self.keys.leader())
            .arg(node)
            .arg(ttl_ms)
            .invoke_async(&mut self.link.clone())
            .await?;
        Ok(held == 1)
    }

    async fn leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self.link.clone().get(self.keys.leader()).await?)
    }

    async fn announce(&self, node: &NodeInfo) -> Result<(), StoreError> {
        let _: i64 = self
            .link
            .clone()
            .hset(self.keys.nodes(), &node.name, encode(node))
            .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut con = self.link.clone();
        let all: Vec<(String, String)> = con.hgetall(self.keys.nodes()).await?;
        let now = now_s();
        let mut out = Vec::new();
        for (name, raw) in all {
            let node: NodeInfo = decode(&raw)?;
            if now - node.seen_at > NODE_MEMORY_S {
                let _: i64 = con.hdel(self.keys.nodes(), &name).await?;
            } else {
                out.push(node);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn set_draining(&self, name: &str, draining: bool) -> Result<(), StoreError> {
        let mut con = self.link.clone();
        let _: i64 = if draining {
            con.sadd(self.keys.draining(), name).await?
        } else {
            con.srem(self.keys.draining(), name).await?
        };
        Ok(())
    }

    async fn draining(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.link.clone().smembers(self.keys.draining()).await?;
        names.sort();
        Ok(names)
    }

    /// With `min_replicas_ack`, also whether the primary has the replicas a write needs:
    /// without them every submission is refused, so the node is not ready.
    async fn ping(&self) -> Result<(), StoreError> {
        let needed = self.settings.min_replicas_ack;
        if needed == 0 {
            let _: String = ::redis::cmd("PING")
                .query_async(&mut self.link.clone())
                .await?;
            return Ok(());
        }
        let role: Vec<::redis::Value> = ::redis::cmd("ROLE")
            .query_async(&mut self.link.clone())
            .await?;
        let replicas = match role.as_slice() {
            [
                ::redis::Value::BulkString(role),
                _,
                ::redis::Value::Array(replicas),
            ] if role == b"master" => replicas.len(),
            _ => {
                return Err(StoreError::Unavailable(
                    "the Redis it talks to is not a primary".into(),
                ));
            }
        };
        if replicas < needed {
            return Err(StoreError::Unavailable(format!(
                "the Redis primary has {replicas} of the {needed} replicas store.min_replicas_ack \
                 needs: submissions are refused"
            )));
        }
        Ok(())
    }
}
