//! The [`Schedules`] role of the embedded store: whole records, changed by the shared
//! `Schedule::advanced` and `Schedule::paused_at`.

use redb::{ReadableTable, ReadableTableMetadata};

use super::*;

impl Schedules for EmbeddedStore {
    async fn create_schedule(
        &self,
        schedule: &Schedule,
        max: u64,
    ) -> Result<ScheduleCreated, StoreError> {
        let schedule = schedule.clone();
        self.write(move |tx, _| {
            let mut table = tx.open_table(SCHEDULES)?;
            if table.get(schedule.name.as_str())?.is_some() {
                return Ok(ScheduleCreated::Exists);
            }
            if table.len()? >= max {
                return Ok(ScheduleCreated::Full);
            }
            table.insert(schedule.name.as_str(), encode(&schedule).as_slice())?;
            Ok(ScheduleCreated::Created)
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.read(|tx, _| {
            let mut out = Vec::new();
            for entry in tx.open_table(SCHEDULES)?.iter()? {
                out.push(decode::<Schedule>(entry?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(move |tx, _| Ok(tx.open_table(SCHEDULES)?.remove(name.as_str())?.is_some()))
            .await
    }

    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        self.change_schedule(name, move |s| s.paused_at(paused, now_s()))
            .await
    }

    async fn advance_schedule(
        &self,
        name: &str,
        through: i64,
        fired: Option<Uuid>,
        due_times: u64,
    ) -> Result<bool, StoreError> {
        self.change_schedule(name, move |s| s.advanced(through, fired, due_times))
            .await
    }
}
