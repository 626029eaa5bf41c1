//! Claims of the first task (`claim_first.lua`): the script takes whichever task is first in
//! the trainer's queues and makes its claimed record itself, so claims of many nodes at once
//! never choose the same task and retry (at 100 nodes, claims chosen by each node from the
//! claim window collided about 25 times a task). A record the script cannot change, or a
//! claim of some work that may match only where `TrainSpec::same_work` allows, is left to the
//! claim of a chosen task (`claim.rs`).

use ::redis::Value;

use super::bundle::parse;
use super::event_log::add_no_event;
use super::*;
use crate::training::device_kind::DeviceSpec;

/// What `claim_first` answered.
pub(super) enum First {
    Taken(Box<Claimed>),
    /// The trainer's queues are empty, or its node is draining.
    Nothing,
    /// The first task is to be claimed as `claim_task` does.
    LookCloser,
}

impl RedisStore {
    /// The claim of the first task of `device`'s queues for `trainer`; with `work`, only a
    /// task doing it.
    pub(super) fn first_call(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: Option<&Work>,
    ) -> Call<'static> {
        let k = &self.keys;
        let now = now_s();
        let node = trainer.contains('/').then(|| trainer_node(trainer));
        let mut call = Call::new(Runs::Bundled(Kind::First));
        call.key(k.running()).key(k.draining());
        for queue in self.queues_of(device) {
            call.key(queue);
        }
        call.arg(encode(&trainer))
            .arg(trainer)
            .arg(trainer_node(trainer))
            .arg(encode(&now))
            .arg(encode(&(now + self.settings.lease_s)))
            .arg(encode(&node))
            .arg(k.task_prefix())
            .arg(k.task_events_prefix());
        match work {
            Some(work) => call.arg(encode(&work.spec)).arg(encode(&work.dataset)),
            None => call.arg("").arg(""),
        };
        // events.lua's keys and arguments, which every op takes; the script logs its event
        // under the id it finds.
        add_no_event(&mut call, &k.events());
        call
    }

    /// Claims the next task of `device`'s queues for `trainer` (with `work`, only a task doing
    /// it): the first one, or as `claim_task` does when the script leaves it to this node.
    pub(super) async fn claim_next(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: Option<&Work>,
    ) -> Result<Option<Claimed>, StoreError> {
        let answer = self
            .bundled_one(self.first_call(trainer, device, work), false)
            .await?;
        self.then_claim(trainer, device, work, first_answer(answer)?)
            .await
    }

    /// The claim `first` answered, or, where it left the task to this node, the claim of the
    /// first task as `claim_task` makes it.
    pub(super) async fn then_claim(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: Option<&Work>,
        first: First,
    ) -> Result<Option<Claimed>, StoreError> {
        match first {
            First::Taken(claimed) => Ok(Some(*claimed)),
            First::Nothing => Ok(None),
            First::LookCloser => {
                let head = self.peek_head(device).await?;
                self.claim_from(trainer, device, head, work).await
            }
        }
    }
}

/// What `claim_first` answered.
pub(super) fn first_answer(answer: Vec<Value>) -> Result<First, StoreError> {
    let mut answer = answer.into_iter();
    let code: i64 = parse(answer.next().unwrap_or(Value::Nil))?;
    Ok(match code {
        1 => {
            let stored: String = parse(answer.next().unwrap_or(Value::Nil))?;
            let task = compact::record_from(stored.as_bytes())?;
            First::Taken(Box::new(Claimed {
                task,
                stored: Some(CasToken::new(stored)),
            }))
        }
        0 | 2 => First::Nothing,
        _ => First::LookCloser,
    })
}
