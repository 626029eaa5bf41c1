//! The [`EventLog`] role of the embedded store: events are written by `tables::save` in the
//! transaction of their change, and sent live once it commits.

use super::*;

impl EventLog for EmbeddedStore {
    async fn task_events(&self, id: Uuid, after: EventId) -> Result<Vec<Event>, StoreError> {
        let id = id.to_string();
        self.read(move |tx, _| {
            let events = tx.open_table(EVENTS)?;
            let mut out = Vec::new();
            let first = after.major.saturating_add(1);
            for entry in events.range((id.as_str(), first)..=(id.as_str(), u64::MAX))? {
                let seq = entry?.0.value().1;
                out.extend(read_event(&events, &id, seq)?);
            }
            Ok(out)
        })
        .await
    }

    async fn events_since(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(move |tx, _| {
            let (log, events) = (tx.open_table(EVENT_LOG)?, tx.open_table(EVENTS)?);
            let mut out = Vec::new();
            for entry in log
                .range(after.major.saturating_add(1)..)?
                .rev()
                .take(limit)
            {
                let (seq, id) = entry?;
                out.extend(read_event(&events, id.value(), seq.value())?);
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
