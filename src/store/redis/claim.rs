//! Claims of a chosen task (`claim_task.lua`, in a bundle), for the tasks `claim_first.lua`
//! leaves to the node (`first.rs`): a trainer tries one of the first tasks of its queues (the
//! claim window, read by `peek.lua` or listed by the last claim's answer; both start with
//! `head.lua`), its claimed record made here.

use std::collections::{HashMap, HashSet, VecDeque};

use super::cas::MAX_CAS_RETRIES;
use super::*;
use crate::training::device_kind::{DeviceClass, DeviceSpec};

/// A task to claim, as `head.lua` answers: its queue (1-based, of those asked about), its
/// id, and its record if it has one.
type Head = (usize, String, Option<String>);

/// How many of the first queued tasks a peek or a claim's answer lists (while more claims of
/// this node are under way than this, one more than them). A node's trainers claim at once,
/// each a different one of these tasks, rather than one after the other: a claim waits for its
/// round trip to Redis, and trainers waiting on each other's left the CPUs idle. A claim may
/// take one of the first N tasks while N claims of its node are under way (see `claim_task.lua`).
const CLAIM_WINDOW: usize = 4;

/// Per device class of trainer, the tasks the last claim from its queues saw first, to try
/// next; and the ids this node's claims try now, which no other claim of it tries.
#[derive(Default)]
pub(super) struct Heads {
    next: HashMap<DeviceClass, VecDeque<Head>>,
    trying: HashSet<String>,
}

/// A task one claim of this node tries; others may try it again once this is dropped.
pub(super) struct Trying {
    heads: Arc<Mutex<Heads>>,
    pub(super) head: Head,
}

impl Drop for Trying {
    fn drop(&mut self) {
        self.heads
            .lock()
            .expect("heads lock")
            .trying
            .remove(&self.head.1);
    }
}

/// Why a queue head was not tried.
pub(super) enum Untried {
    /// A queued id without a record: its queue and id.
    NoRecord(String, Uuid),
    /// A task not doing the work asked for.
    OtherWork,
}

/// A claim of a queue's head, ready to run.
pub(super) struct ClaimTry<'s> {
    pub(super) call: Call<'s>,
    /// The record as claimed, and as it is stored.
    pub(super) task: TaskRecord,
    pub(super) stored: String,
}

/// How a claim try went.
pub(super) enum ClaimAnswer {
    Taken(Box<Claimed>),
    /// The trainer's node is draining: it takes no work.
    Draining,
    /// The task was no longer queued, among the first, or unchanged: try the next one the
    /// script saw.
    Moved,
}

impl RedisStore {
    /// The first tasks of `queues` to claim (the claim window) and their records, in one
    /// round trip.
    pub(super) async fn peek(&self, queues: &[String]) -> Result<Vec<Head>, StoreError> {
        let mut peek = self.scripts.peek.prepare_invoke();
        for queue in queues {
            peek.key(queue);
        }
        peek.arg(self.keys.task_prefix())
            .arg(Self::window(self.trying()));
        Ok(peek.invoke_async(&mut self.link.clone()).await?)
    }

    /// The queues a trainer of `device` takes from: the ones for any device, then its class's.
    pub(super) fn queues_of(&self, device: DeviceSpec) -> [String; 2] {
        [DeviceClass::Any, device.class()].map(|class| self.keys.queue(class))
    }

    /// How many claims of this node are under way.
    pub(super) fn trying(&self) -> usize {
        self.heads.lock().expect("heads lock").trying.len()
    }

    /// How many of the first queued tasks a peek or a claim's answer lists while `trying`
    /// claims of this node are under way (see `CLAIM_WINDOW`).
    pub(super) fn window(trying: usize) -> usize {
        CLAIM_WINDOW.max(trying + 1)
    }

    /// The next task of `device`'s queues that no claim of this node tries, as read now.
    pub(super) async fn peek_head(&self, device: DeviceSpec) -> Result<Option<Trying>, StoreError> {
        let heads = self.peek(&self.queues_of(device)).await?;
        self.remember(device.class(), heads);
        Ok(self.take_head(device.class()))
    }

    /// The next remembered task of `class` that no claim of this node tries, now tried.
    pub(super) fn take_head(&self, class: DeviceClass) -> Option<Trying> {
        let mut heads = self.heads.lock().expect("heads lock");
        let Heads { next, trying } = &mut *heads;
        let queued = next.get_mut(&class)?;
        while let Some(head) = queued.pop_front() {
            if trying.insert(head.1.clone()) {
                return Some(Trying {
                    heads: self.heads.clone(),
                    head,
                });
            }
        }
        None
    }

    /// Keeps the first tasks of `class`'s queues, as a script saw them, for the next claims.
    pub(super) fn remember(&self, class: DeviceClass, seen: Vec<Head>) {
        let mut heads = self.heads.lock().expect("heads lock");
        let fresh = seen
            .into_iter()
            .filter(|head| !heads.trying.contains(&head.1))
            .collect();
        heads.next.insert(class, fresh);
    }

    /// Claims for `trainer` from `head` (see `claim_task.lua`), retrying from the tasks each failed
    /// try answers; with `work`, only a task doing it.
    pub(super) async fn claim_from(
        &self,
        trainer: &str,
        device: DeviceSpec,
        mut head: Option<Trying>,
        work: Option<&Work>,
    ) -> Result<Option<Claimed>, StoreError> {
        let queues = self.queues_of(device);
        for _ in 0..MAX_CAS_RETRIES {
            let Some(next) = head.take() else {
                return Ok(None);
            };
            let claim = match self.claim_try(trainer, &queues, &next.head, work)? {
                Ok(claim) => claim,
                Err(Untried::OtherWork) => return Ok(None),
                Err(Untried::NoRecord(queue, id)) => {
                    // A queued id without a record cannot run; drop it so it does not block
                    // the queue.
                    let _: i64 = self.link.clone().zrem(queue, id.to_string()).await?;
                    drop(next);
                    head = self.peek_head(device).await?;
                    continue;
                }
            };
            // In the node's next bundle, with the claims of its other idle trainers.
            let answer = self.bundled_one(claim.call, false).await?;
            match self.claim_answer(device, answer, claim.task, claim.stored) {
                ClaimAnswer::Taken(claimed) => return Ok(Some(*claimed)),
                ClaimAnswer::Draining => return Ok(None),
                ClaimAnswer::Moved => {
                    drop(next);
                    head = self.take_head(device.class());
                }
            }
        }
        Err(StoreError::Unavailable(
            "the queue kept changing while claiming".into(),
        ))
    }

    /// The claim of queue head `head` for `trainer`, ready to run; or why there is none: a
    /// queued id without a record (its queue and id), or a task not doing `work`.
    pub(super) fn claim_try<'s>(
        &'s self,
        trainer: &str,
        queues: &[String; 2],
        (queue, id, old): &Head,
        work: Option<&Work>,
    ) -> Result<Result<ClaimTry<'s>, Untried>, StoreError> {
        let k = &self.keys;
        let queue = queue
            .checked_sub(1)
            .and_then(|i| queues.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("head.lua answered queue {queue}")))?;
        let id = Uuid::parse_str(id)
            .map_err(|e| StoreError::Corrupt(format!("queue holds {id:?}: {e}")))?;
        let Some(old) = old else {
            return Ok(Err(Untried::NoRecord(queue.clone(), id)));
        };
        let before = compact::record_from(old.as_bytes())?;
        if work.is_some_and(|work| !work.done_by(&before)) {
            return Ok(Err(Untried::OtherWork));
        }
        let task = before.clone().claimed(trainer, &self.settings);
        let stored = encode(&task);
        let lease = format!("{trainer}\t{}", task.attempt);
        let mut call = Call::new(Runs::Bundled(Kind::Claim));
        call.key(k.task(id))
            .key(queue)
            .key(k.running())
            .key(k.draining());
        for queue in queues {
            call.key(queue);
        }
        call.arg(old)
            .arg(&stored)
            .arg(id.to_string())
            .arg(&lease)
            .arg(k.task_prefix())
            .arg(trainer_node(trainer));
        let trying = self.trying();
        call.arg(trying.max(1)).arg(Self::window(trying));
        self.add_event(&mut call, Some(&before), &task);
        Ok(Ok(ClaimTry { call, task, stored }))
    }

    /// What `claim_task` answered for a try of `task` (stored as `stored`); the first tasks it
    /// saw after a change are kept for the next claims from `device`'s queues.
    pub(super) fn claim_answer(
        &self,
        device: DeviceSpec,
        (taken, next): (i64, Vec<Head>),
        task: TaskRecord,
        stored: String,
    ) -> ClaimAnswer {
        if taken != 2 {
            self.remember(device.class(), next);
        }
        match taken {
            1 => ClaimAnswer::Taken(Box::new(Claimed {
                task,
                stored: Some(CasToken::new(stored)),
            })),
            2 => ClaimAnswer::Draining,
            _ => ClaimAnswer::Moved,
        }
    }
}
