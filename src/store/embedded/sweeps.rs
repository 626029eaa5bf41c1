//! The [`Sweeps`] role of the embedded store: whole records compared by version, rung
//! results decided by the shared `asha_go_on` inside the write transaction.

use redb::{ReadableTable, ReadableTableMetadata};

use super::*;

/// Sweep id -> JSON `Sweep` (ids are UUIDv7: in creation order).
pub(super) const SWEEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("sweeps");
/// (sweep id, step, trial) -> JSON `RungResult`.
pub(super) const SWEEP_RUNGS: TableDefinition<(&str, u64, u64), &[u8]> =
    TableDefinition::new("sweep_rungs");
/// (sweep id, event number) -> the event's JSON.
pub(super) const SWEEP_EVENTS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("sweep_events");

/// Appends `events` to sweep `id`'s log.
fn log(tx: &WriteTransaction, id: &str, events: &[String]) -> Result<(), StoreError> {
    let mut table = tx.open_table(SWEEP_EVENTS)?;
    let mut last = table
        .range((id, 0)..=(id, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value().1);
    for event in events {
        last += 1;
        table.insert((id, last), event.as_bytes())?;
    }
    Ok(())
}

fn results(
    table: &impl ReadableTable<(&'static str, u64, u64), &'static [u8]>,
    id: &str,
) -> Result<Vec<RungResult>, StoreError> {
    let mut out = Vec::new();
    for entry in table.range((id, 0, 0)..=(id, u64::MAX, u64::MAX))? {
        out.push(decode(entry?.1.value())?);
    }
    Ok(out)
}

impl Sweeps for EmbeddedStore {
    async fn create_sweep(
        &self,
        sweep: &Sweep,
        max: u64,
        event: &str,
    ) -> Result<SweepCreated, StoreError> {
        let (sweep, event) = (sweep.clone(), event.to_string());
        self.write(move |tx, _| {
            let mut table = tx.open_table(SWEEPS)?;
            if table.len()? >= max {
                return Ok(SweepCreated::Full);
            }
            let id = sweep.id.to_string();
            table.insert(id.as_str(), encode(&sweep).as_slice())?;
            log(tx, &id, &[event])?;
            Ok(SweepCreated::Created)
        })
        .await
    }

    async fn get_sweep(&self, id: Uuid) -> Result<Option<Sweep>, StoreError> {
        self.read(move |tx, _| {
            let table = tx.open_table(SWEEPS)?;
            let found = table.get(id.to_string().as_str())?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn sweeps(&self) -> Result<Vec<Sweep>, StoreError> {
        self.read(|tx, _| {
            let mut out = Vec::new();
            for entry in tx.open_table(SWEEPS)?.iter()? {
                out.push(decode::<Sweep>(entry?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn running_sweeps(&self) -> Result<Vec<Sweep>, StoreError> {
        let mut sweeps = self.sweeps().await?;
        sweeps.retain(|s| s.state == SweepState::Running);
        Ok(sweeps)
    }

    async fn update_sweep(&self, sweep: &Sweep, events: &[String]) -> Result<bool, StoreError> {
        let (sweep, events) = (sweep.clone(), events.to_vec());
        self.write(move |tx, _| {
            let id = sweep.id.to_string();
            let mut table = tx.open_table(SWEEPS)?;
            let stored: Option<Sweep> = table
                .get(id.as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if stored.is_none_or(|s| s.version + 1 != sweep.version) {
                return Ok(false);
            }
            table.insert(id.as_str(), encode(&sweep).as_slice())?;
            log(tx, &id, &events)?;
            Ok(true)
        })
        .await
    }

    async fn delete_sweep(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write(move |tx, _| {
            let id = id.to_string();
            let id = id.as_str();
            let existed = tx.open_table(SWEEPS)?.remove(id)?.is_some();
            tx.open_table(SWEEP_RUNGS)?
                .retain_in((id, 0, 0)..=(id, u64::MAX, u64::MAX), |_, _| false)?;
            tx.open_table(SWEEP_EVENTS)?
                .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
            Ok(existed)
        })
        .await
    }

    async fn report_rung(
        &self,
        id: Uuid,
        trial: u32,
        step: u64,
        value: f64,
        rule: RungRule,
    ) -> Result<bool, StoreError> {
        self.write(move |tx, _| {
            let key = id.to_string();
            let mut table = tx.open_table(SWEEP_RUNGS)?;
            if let Some(made) = table.get((key.as_str(), step, trial as u64))? {
                return Ok(decode::<RungResult>(made.value())?.go_on);
            }
            let recorded: Vec<f64> = table
                .range((key.as_str(), step, 0)..=(key.as_str(), step, u64::MAX))?
                .map(|entry| Ok(decode::<RungResult>(entry?.1.value())?.value))
                .collect::<Result<_, StoreError>>()?;
            let result = RungResult {
                trial,
                step,
                value,
                go_on: asha_go_on(&recorded, value, rule),
            };
            table.insert(
                (key.as_str(), step, trial as u64),
                encode(&result).as_slice(),
            )?;
            log(tx, &key, &[rung_event(id, &result)])?;
            Ok(result.go_on)
        })
        .await
    }

    async fn rungs(&self, id: Uuid) -> Result<Vec<RungResult>, StoreError> {
        self.read(move |tx, _| results(&tx.open_table(SWEEP_RUNGS)?, &id.to_string()))
            .await
    }

    async fn sweep_events(
        &self,
        id: Uuid,
        after: u64,
        max: usize,
    ) -> Result<Vec<SweepEvent>, StoreError> {
        self.read(move |tx, _| {
            let id = id.to_string();
            let table = tx.open_table(SWEEP_EVENTS)?;
            let mut out = Vec::new();
            for entry in table
                .range((id.as_str(), after.saturating_add(1))..=(id.as_str(), u64::MAX))?
                .take(max)
            {
                let (k, v) = entry?;
                out.push(SweepEvent {
                    seq: k.value().1,
                    data: String::from_utf8_lossy(v.value()).into_owned(),
                });
            }
            Ok(out)
        })
        .await
    }
}
