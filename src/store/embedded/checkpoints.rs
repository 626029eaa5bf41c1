//! The [`Checkpoints`] role of the embedded store: one row per running task, written only
//! while the attempt that saves it runs the task, removed when the task ends (`save_ended`).

use redb::ReadableTable;

use super::*;
use crate::training::Checkpoint;

/// `attempt`, `step`, then the state, as `CHECKPOINTS` keeps them.
fn encode_checkpoint(attempt: u32, checkpoint: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + checkpoint.bytes.len());
    out.extend_from_slice(&attempt.to_le_bytes());
    out.extend_from_slice(&checkpoint.step.to_le_bytes());
    out.extend_from_slice(&checkpoint.bytes);
    out
}

fn decode_checkpoint(id: &str, row: &[u8]) -> Result<Checkpoint, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("checkpoint of task {id} is truncated"));
    let (_attempt, rest) = row.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let (step, bytes) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    Ok(Checkpoint {
        step: u64::from_le_bytes(*step),
        bytes: bytes.to_vec(),
    })
}

fn read_checkpoint(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    let row = table.get(id)?;
    row.map(|row| decode_checkpoint(id, row.value()))
        .transpose()
}

impl Checkpoints for EmbeddedStore {
    async fn put_checkpoint(
        &self,
        id: Uuid,
        attempt: u32,
        checkpoint: &Checkpoint,
    ) -> Result<bool, StoreError> {
        let row = encode_checkpoint(attempt, checkpoint);
        self.write(move |tx, _| {
            if load_running(tx, id, attempt)?.is_none() {
                return Ok(false);
            }
            tx.open_table(CHECKPOINTS)?
                .insert(id.to_string().as_str(), row.as_slice())?;
            Ok(true)
        })
        .await
    }

    async fn resume_from(&self, id: Uuid, attempt: u32) -> Result<Option<Checkpoint>, StoreError> {
        self.write(move |tx, _| {
            let Some(task) = load_running(tx, id, attempt)? else {
                return Ok(None);
            };
            let key = id.to_string();
            let Some(checkpoint) = read_checkpoint(&tx.open_table(CHECKPOINTS)?, &key)? else {
                return Ok(None);
            };
            save(tx, &task.resumed(checkpoint.step))?;
            Ok(Some(checkpoint))
        })
        .await
    }

    async fn checkpoint(&self, id: Uuid) -> Result<Option<Checkpoint>, StoreError> {
        self.read(move |tx, _| read_checkpoint(&tx.open_table(CHECKPOINTS)?, &id.to_string()))
            .await
    }

    async fn drop_checkpoint(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |tx, _| {
            tx.open_table(CHECKPOINTS)?
                .remove(id.to_string().as_str())?;
            Ok(())
        })
        .await
    }
}
