//! The queue of callbacks due (`hold.lua`): the [`Callbacks`] role; a try is noted in
//! `update.rs`.

use super::*;

impl Callbacks for RedisStore {
    async fn due_callbacks(&self, limit: usize, hold_s: f64) -> Result<Vec<Uuid>, StoreError> {
        let now = now_s();
        let ids: Vec<String> = self
            .scripts
            .hold
            .key(self.keys.callbacks())
            .arg(now)
            .arg(limit)
            .arg(now + hold_s)
            .invoke_async(&mut self.link.clone())
            .await?;
        Ok(ids.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect())
    }

    async fn callback_tried(
        &self,
        id: Uuid,
        error: Option<String>,
        retry_in_s: Option<f64>,
    ) -> Result<(), StoreError> {
        self.note_callback(id, error, retry_in_s).await
    }
}
