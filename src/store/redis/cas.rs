//! The one compare-and-set of a task record: read the record, let the shared transitions
//! decide the change, run the script that writes it only if the record is still the one
//! read, and try again from the new record if it was not.

use super::*;

/// Most times a change is retried after losing a compare-and-set race.
pub(super) const MAX_CAS_RETRIES: usize = 64;

/// What a compare-and-set decided from the record it read.
pub(super) enum Step<'s, T> {
    /// Answer this without writing.
    Answer(T),
    /// Run this write, and answer `T` if the record was still the one read.
    Write(Swap<'s>, T),
}

/// A compare-and-set script call, ready to run: its ARGV[1] is the record read, ARGV[2] the
/// new one.
pub(super) struct Swap<'s> {
    pub(super) call: Call<'s>,
    /// Acknowledged only once the replicas asked for have it (`WAIT`).
    replicated: bool,
}

impl<'s> Swap<'s> {
    /// Acknowledged only once it is on the replicas asked for (a result: the trainer moves on
    /// once it has the answer).
    pub(super) fn replicated(mut self) -> Swap<'s> {
        self.replicated = true;
        self
    }

    /// Whether it is acknowledged only once on the replicas asked for.
    pub(super) fn is_replicated(&self) -> bool {
        self.replicated
    }
}

impl RedisStore {
    /// Changes task `id`'s record as `decide` says from the record as read (None: there is
    /// none), retrying from the current record while another change gets in between.
    pub(super) async fn compare_and_set<'s, T>(
        &'s self,
        id: Uuid,
        mut decide: impl FnMut(Option<(&[u8], TaskRecord)>) -> Result<Step<'s, T>, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..MAX_CAS_RETRIES {
            let raw = self.raw(id).await?;
            let read = match &raw {
                Some(old) => Some((old.as_slice(), compact::record_from(old)?)),
                None => None,
            };
            match decide(read)? {
                Step::Answer(answer) => return Ok(answer),
                Step::Write(swap, answer) => {
                    if self.run_swap(swap, id).await? {
                        return Ok(answer);
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "task {id} kept changing; gave up after {MAX_CAS_RETRIES} tries"
        )))
    }

    /// [`compare_and_set`](Self::compare_and_set) of a running task: `change` makes the next
    /// record from the one of `attempt`; `fenced` is the answer when `attempt` no longer runs it.
    pub(super) async fn change_running<'s, T: Clone>(
        &'s self,
        id: Uuid,
        attempt: u32,
        fenced: T,
        mut change: impl FnMut(&[u8], TaskRecord) -> Step<'s, T>,
    ) -> Result<T, StoreError> {
        self.compare_and_set(id, |read| {
            Ok(match read {
                Some((old, task)) if task.runs_attempt(attempt) => change(old, task),
                _ => Step::Answer(fenced.clone()),
            })
        })
        .await
    }

    /// Runs `swap`; true if the record was still the one read and the change was made. An
    /// end goes in the node's next bundle (`bundle.rs`).
    pub(super) async fn run_swap(&self, swap: Swap<'_>, id: Uuid) -> Result<bool, StoreError> {
        let script = match swap.call.runs {
            Runs::Alone(script) => script,
            Runs::Bundled(_) => {
                let changed: i64 = self.bundled_one(swap.call, swap.replicated).await?;
                return Ok(changed == 1);
            }
        };
        let invocation = swap.call.invocation(script);
        if !swap.replicated {
            let changed: i64 = invocation.invoke_async(&mut self.link.clone()).await?;
            return Ok(changed == 1);
        }
        let mut writer = self.link.writer();
        let changed: i64 = invocation.invoke_async(&mut writer).await?;
        if changed == 1 {
            writer
                .replicated(|| format!("the end of task {id}"))
                .await?;
        }
        Ok(changed == 1)
    }

    /// The compare-and-set run as `runs` says, from `old` (decoded as `before`) to `new`, on
    /// `keys`, with `extra` arguments after the two records and the event of the change.
    pub(super) fn swap<'s>(
        &self,
        runs: Runs<'s>,
        keys: &[String],
        (old, before): (&[u8], &TaskRecord),
        new: &TaskRecord,
        extra: &[&[u8]],
    ) -> Swap<'s> {
        let mut call = Call::new(runs);
        for key in keys {
            call.key(key);
        }
        call.arg(old).arg(compact::record_bytes(new));
        for arg in extra {
            call.arg(*arg);
        }
        self.add_event(&mut call, Some(before), new);
        Swap {
            call,
            replicated: false,
        }
    }

    /// A change of the record alone (`update.lua`), from `old` (decoded as `before`) to `new`.
    pub(super) fn update<'s>(
        &'s self,
        (old, before): (&[u8], &TaskRecord),
        new: &TaskRecord,
    ) -> Swap<'s> {
        let keys = [self.keys.task(new.id)];
        self.swap(
            Runs::Alone(&self.scripts.update),
            &keys,
            (old, before),
            new,
            &[],
        )
    }
}
