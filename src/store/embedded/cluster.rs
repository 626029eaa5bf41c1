//! The [`ClusterState`] role of the embedded store (one node: it leads, and it keeps its own
//! announcement and drain flag in memory) and its [`Callbacks`].

use super::*;

impl ClusterState for EmbeddedStore {
    /// One node, so it leads.
    async fn lead(&self, _node: &str, _ttl_s: f64) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self.announced().map(|n| n.name))
    }

    async fn announce(&self, node: &NodeInfo) -> Result<(), StoreError> {
        *self.node.lock().expect("node lock") = Some(node.clone());
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        Ok(self.announced().into_iter().collect())
    }

    async fn set_draining(&self, name: &str, draining: bool) -> Result<(), StoreError> {
        let mut names = self.draining.lock().expect("draining lock");
        names.retain(|n| n != name);
        if draining {
            names.push(name.to_string());
        }
        Ok(())
    }

    async fn draining(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.draining.lock().expect("draining lock").clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx, _| {
            tx.open_table(META)?;
            Ok(())
        })
        .await
    }
}

impl Callbacks for EmbeddedStore {
    async fn due_callbacks(&self, limit: usize, hold_s: f64) -> Result<Vec<Uuid>, StoreError> {
        self.write(move |tx, _| {
            let now = now_s();
            let mut due = Vec::new();
            for entry in tx
                .open_table(CALLBACKS)?
                .range(..=((now * 1000.0) as u64, u64::MAX))?
                .take(limit)
            {
                due.push(entry?.1.value().to_string());
            }
            for id in &due {
                schedule_callback(tx, id, Some(now + hold_s))?;
            }
            Ok(due.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect())
        })
        .await
    }

    async fn callback_tried(
        &self,
        id: Uuid,
        error: Option<String>,
        retry_in_s: Option<f64>,
    ) -> Result<(), StoreError> {
        self.write(move |tx, _| {
            let key = id.to_string();
            let Some(task) = load(tx, &key)? else {
                return schedule_callback(tx, &key, None);
            };
            save(tx, &task.callback_noted(error, retry_in_s.is_some()))?;
            schedule_callback(tx, &key, retry_in_s.map(|w| now_s() + w))
        })
        .await
    }
}
