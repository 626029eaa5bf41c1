//! The task record's transitions, shared by every store so that both make the same decisions:
//! each takes the current record and returns the next one (or what to answer); a backend only
//! makes the change atomic and stores it.

use super::{
    AttemptRecord, CallbackState, CancelOutcome, Expires, Finish, Lease, StoreSettings, TaskError,
    TaskFilter, TaskProgress, TaskRecord, TaskState, now_s, trainer_node,
};

/// What a cancel does to a stored task, decided once for every store
/// ([`TaskRecord::cancelled`]).
#[derive(Debug)]
pub(super) enum Cancel {
    /// Nothing to write: answer this.
    Answer(CancelOutcome),
    /// It was pending: store this ended record, out of its queue (its callback queued as
    /// [`TaskRecord::callback_due`] says), and answer `Revoked`.
    Revoke(TaskRecord),
    /// It runs: store this record, flagged for its trainer to stop, and answer this.
    Flag(TaskRecord, CancelOutcome),
}

impl TaskRecord {
    /// Whether the task is running under `attempt` (fencing: a stale attempt may not write).
    pub fn runs_attempt(&self, attempt: u32) -> bool {
        self.state.is_running() && self.attempt == attempt
    }

    pub(super) fn claimed(mut self, trainer: &str, settings: &StoreSettings) -> Self {
        let now = now_s();
        self.state = TaskState::Started;
        self.attempt += 1;
        self.trainer = Some(trainer.to_string());
        self.started_at = Some(now);
        self.progress = None;
        self.lease_until = Some(now + settings.lease_s);
        self.retry_at = None;
        self.resumed_from = None;
        self
    }

    /// The running attempt resumes from a checkpoint after `step` steps.
    pub(super) fn resumed(mut self, step: u64) -> Self {
        self.resumed_from = Some(step);
        self
    }

    /// A progress write renews the lease too.
    pub(super) fn progressed(mut self, progress: &TaskProgress, settings: &StoreSettings) -> Self {
        self.state = TaskState::Progress;
        self.progress = Some(progress.clone());
        self.lease_until = Some(now_s() + settings.lease_s);
        self
    }

    pub(super) fn renewed(mut self, settings: &StoreSettings) -> Self {
        self.lease_until = Some(now_s() + settings.lease_s);
        self
    }

    /// The ended record, and the model to store with it.
    pub(super) fn finished(
        mut self,
        finish: Finish,
        settings: &StoreSettings,
    ) -> (Self, Option<Vec<u8>>) {
        let (state, model) = match finish {
            Finish::Success {
                result,
                model,
                progress,
            } => {
                if progress.is_some() {
                    self.progress = progress;
                }
                if let Some(p) = &mut self.progress {
                    p.current = p.total;
                    p.percent = 100.0;
                }
                self.result = Some(result);
                // An empty model (a `noop` task's) is kept as none.
                (TaskState::Success, (!model.is_empty()).then_some(model))
            }
            Finish::Failure(error) => {
                self.error = Some(error);
                (TaskState::Failure, None)
            }
            Finish::Revoked => {
                self.error = Some(TaskError {
                    code: "revoked".into(),
                    message: "task was cancelled while running".into(),
                });
                (TaskState::Revoked, None)
            }
        };
        (self.ended(state, settings), model)
    }

    /// What cancelling the task does by `now`. An expired task answers `Expired`, even while
    /// its record is still kept (Redis drops a key on whole seconds, the embedded store at the
    /// next sweep); a pending one is revoked; a running one is flagged for its trainer, which
    /// stops it; an ended one stays as it is.
    pub(super) fn cancelled(mut self, now: f64, settings: &StoreSettings) -> Cancel {
        if self.expired_at(now) {
            return Cancel::Answer(CancelOutcome::Expired);
        }
        match self.state {
            TaskState::Pending => {
                self.error = Some(TaskError {
                    code: "revoked".into(),
                    message: "task was cancelled before it started".into(),
                });
                Cancel::Revoke(self.ended(TaskState::Revoked, settings))
            }
            TaskState::Started | TaskState::Progress => {
                let running = CancelOutcome::Running {
                    trainer: self.trainer.clone().unwrap_or_default(),
                    attempt: self.attempt,
                };
                self.cancel_requested = true;
                Cancel::Flag(self, running)
            }
            state => Cancel::Answer(CancelOutcome::AlreadyFinished(state)),
        }
    }

    /// What a purge does to the task: a pending one (queued, or waiting out a retry backoff)
    /// is revoked, and its ended record returned; any other is left alone (None).
    pub(super) fn purged(mut self, settings: &StoreSettings) -> Option<Self> {
        if self.state != TaskState::Pending {
            return None;
        }
        self.error = Some(TaskError {
            code: "purged".into(),
            message: "task was purged from the queue before it started".into(),
        });
        Some(self.ended(TaskState::Revoked, settings))
    }

    /// Whether storing this record queues a delivery of its callback now: it ended and has a
    /// `callback_url`.
    pub(super) fn callback_due(&self) -> bool {
        self.callback_url.is_some() && self.state.is_terminal()
    }

    /// The priority the queues rank the task by, 0 (lowest) to 9: a record may hold more
    /// (written by hand, or by an older node), which ranks as 9.
    pub fn queue_priority(&self) -> u8 {
        self.priority.min(9)
    }

    pub(super) fn ended(mut self, state: TaskState, settings: &StoreSettings) -> Self {
        let now = now_s();
        self.state = state;
        self.lease_until = None;
        self.finished_at = Some(now);
        self.expires_at = Some(now + settings.result_expires_s);
        self
    }

    pub(super) fn requeued(mut self, attempt: u32, error: TaskError, delay_s: f64) -> Self {
        let now = now_s();
        self.attempts.push(AttemptRecord {
            attempt,
            trainer: self.trainer.take(),
            error,
            failed_at: Some(now),
            resumed_from: self.resumed_from.take(),
        });
        self.state = TaskState::Pending;
        self.progress = None;
        self.lease_until = None;
        self.retry_at = (delay_s > 0.0).then_some(now + delay_s);
        self
    }

    /// The record after a delivery try of its callback.
    pub(super) fn callback_noted(mut self, error: Option<String>, retry: bool) -> Self {
        let state = self.callback.get_or_insert_with(CallbackState::default);
        state.attempts += 1;
        match error {
            None => state.delivered_at = Some(now_s()),
            Some(e) => {
                state.last_error = Some(e);
                state.failed = !retry;
            }
        }
        self
    }

    /// The node of the task's current (or last) trainer.
    pub fn node(&self) -> Option<&str> {
        let trainer = self
            .trainer
            .as_deref()
            .or_else(|| self.attempts.last().and_then(|a| a.trainer.as_deref()))?;
        trainer.contains('/').then(|| trainer_node(trainer))
    }

    pub(super) fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            trainer: self.trainer.clone().unwrap_or_default(),
            attempt: self.attempt,
            max_retries: self.max_retries,
            model_type: self.model_type,
            until: self.lease_until.unwrap_or(f64::INFINITY),
        }
    }

    pub(super) fn matches(&self, filter: &TaskFilter) -> bool {
        filter.state.is_none_or(|s| s == self.state)
            && filter.model_type.is_none_or(|m| m == self.model_type)
            && filter
                .node
                .as_ref()
                .is_none_or(|n| self.node() == Some(n.as_str()))
    }
}
