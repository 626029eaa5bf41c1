//! An attempt of a task on a trainer: its data loaded (built in, parsed before, or read from
//! the store and parsed), its training run on tokio's blocking pool from the task's checkpoint
//! if an earlier attempt left one, its lease renewed, its progress and its checkpoints written
//! while it trains, and its end sent back to the trainer as `Ended`.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::TrainerArgs;
use super::outcome::classify_panic;
use crate::actors::{Ended, Stop, TrainerMsg};
use crate::store::{CasToken, DatasetInfo, Renewal, Store, SweepLink, TaskProgress, TaskRecord};
use crate::telemetry;
use crate::training::{
    self, CancelToken, Checkpoint, Checkpointing, Dataset, ModelType, SaveNow, TrainError,
    TrainOutcome,
};

/// Least time between two progress writes of one task.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// When the first progress of a training is written (reports before then gather): a training
/// that ends sooner writes none, its end says it all.
const FIRST_WRITE_AFTER: Duration = Duration::from_millis(50);

/// Test hook: a task with this seed panics its trainer on its first attempt, and one with this
/// seed + 1 on every attempt, so tests can show that a crashed trainer's task is retried, with
/// backoff, up to its limit. Unset in normal use.
const PANIC_SEED_ENV: &str = "TRAINYARD_TEST_PANIC_SEED";

/// Test hook: a task with this seed blocks its training thread for a minute, deaf to cancel
/// and to the soft time limit (as a stuck kernel would), so tests can show the hard limit.
const HANG_SEED_ENV: &str = "TRAINYARD_TEST_HANG_SEED";

/// Faults injected for tests, by task seed (none in normal use). Read once, when the node
/// starts ([`Faults::from_env`]), and handed to its trainers in their arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// `TRAINYARD_TEST_PANIC_SEED`: a task with this seed panics its training on its first
    /// attempt, one with this seed + 1 on every attempt.
    pub panic_seed: Option<u64>,
    /// `TRAINYARD_TEST_HANG_SEED`: a task with this seed blocks its training thread for a
    /// minute, deaf to cancel and to the soft time limit.
    pub hang_seed: Option<u64>,
}

impl Faults {
    /// The hooks the environment of this process asks for.
    pub fn from_env() -> Faults {
        let seed = |name: &str| std::env::var(name).ok()?.parse::<u64>().ok();
        Faults {
            panic_seed: seed(PANIC_SEED_ENV),
            hang_seed: seed(HANG_SEED_ENV),
        }
    }

    /// Whether attempt `attempt` of a task with `seed` panics.
    fn panics(&self, seed: u64, attempt: u32) -> bool {
        self.panic_seed
            .is_some_and(|panic| (seed == panic && attempt == 1) || seed == panic.wrapping_add(1))
    }

    /// Whether a task with `seed` hangs.
    fn hangs(&self, seed: u64) -> bool {
        self.hang_seed == Some(seed)
    }
}

/// Starts the training of `task` on the blocking pool; `Ended` comes back when it is over.
pub(super) fn start<S: Store>(
    args: &TrainerArgs<S>,
    task: TaskRecord,
    stored: Option<CasToken>,
    cancel: CancelToken,
    hard_limit_s: f64,
    myself: ActorRef<TrainerMsg>,
) {
    let hard_at = Instant::now() + Duration::from_secs_f64(hard_limit_s);
    let store = args.store.clone();
    let device = args.device;
    let default_limit = args.settings.time_limit_s;
    let renew_every = Duration::from_secs_f64(args.settings.lease_s / 3.0);
    let trainer = args.name.clone();
    // A root span: a task claimed while the last one ended would otherwise be its child, and a
    // trainer running on would nest every task of its run in the one before.
    let span = tracing::info_span!(
        parent: None,
        "task",
        task_id = %task.id,
        attempt = task.attempt,
        trainer = %trainer
    );
    let datasets = args.datasets.clone();
    let faults = args.faults;
    let stop = args.stop.clone();
    let (every_s, max_bytes) = (
        args.settings.checkpoint_every_s,
        args.settings.checkpoint_max_bytes,
    );
    let run = async move {
        let source = match task.dataset_id {
            None => Source::Builtin,
            Some(id) => match datasets.get(id) {
                Some(parsed) => Source::Parsed(parsed),
                None => {
                    let loaded = match store.dataset(id).await {
                        Ok(Some((info, csv))) => Ok(Source::Csv { id, info, csv }),
                        Ok(None) => Err(TrainError::InvalidSpec {
                            problems: vec![format!("data set {id} not found")],
                        }),
                        Err(e) => Err(TrainError::Backend(format!(
                            "cannot load data set {id}: {e}"
                        ))),
                    };
                    match loaded {
                        Ok(source) => source,
                        Err(error) => {
                            let _ = myself.cast(TrainerMsg::Ended {
                                task: Box::new(task),
                                outcome: Ended::Done(Err(error)),
                                last_progress: None,
                                stored: None,
                                checkpointed: false,
                            });
                            return;
                        }
                    }
                }
            },
        };
        let (progress_tx, progress_rx) = watch::channel(None);
        let mut spec = task.spec.clone();
        spec.time_limit_s = Some(
            spec.time_limit_s
                .map_or(default_limit, |t| t.min(default_limit)),
        );
        let panic_now = faults.panics(spec.seed, task.attempt);
        let hang_now = faults.hangs(spec.seed);
        let training_cancel = cancel.clone();
        // Only a retry can find a checkpoint: a first attempt costs no round trip for it.
        let enabled = max_bytes > 0;
        let from = if enabled && task.attempt > 1 {
            resume_from(&*store, task.id, task.attempt).await
        } else {
            None
        };
        let resumed = from.is_some();
        let (checkpoint_tx, checkpoint_rx) = watch::channel(None);
        let save_now = SaveNow::new();
        let checkpoints = enabled.then(|| Checkpoints {
            from,
            every: Duration::from_secs_f64(every_s),
            save_now: save_now.clone(),
            sent: checkpoint_tx,
        });
        // A sweep's trial is judged at its rungs: each report waits for the store's decision.
        let rungs = task
            .sweep
            .as_ref()
            .and_then(|link| Some((link.clone(), link.rule?)))
            .filter(|(link, _)| !link.rungs.is_empty());
        let (judge_store, runtime) = (store.clone(), tokio::runtime::Handle::current());
        let training = tokio::task::spawn_blocking(move || {
            if hang_now {
                std::thread::sleep(Duration::from_secs(60));
            }
            if panic_now {
                panic!("test hook {PANIC_SEED_ENV} asked for a panic");
            }
            if spec.model_type == ModelType::Noop {
                // No data to load: a no-op measures the queue alone.
                return training::noop::run(&spec, &training_cancel);
            }
            let dataset = match source {
                Source::Parsed(parsed) => parsed,
                Source::Csv { id, info, csv } => {
                    datasets.put(id, Dataset::from_csv(&csv, &info.name, &info.target)?)
                }
                Source::Builtin => Arc::new(Dataset::builtin(&spec.dataset, spec.seed)?),
            };
            // Only stored here: the watch wakes no one, the attempt's task reads it on its own
            // timer.
            let mut on_progress = |p: &training::Progress| {
                progress_tx.send_replace(Some(p.clone()));
            };
            let mut judge = |step: u64, value: f64| match &rungs {
                Some((link, rule)) => {
                    let report = judge_store.report_rung(link.id, link.trial, step, value, *rule);
                    match runtime.block_on(report) {
                        Ok(go_on) => go_on,
                        Err(e) => {
                            // No decision is better than a wrong one: the trial goes on.
                            tracing::warn!(error = %e, step, "cannot report a rung; going on");
                            true
                        }
                    }
                }
                None => true,
            };
            let link = rungs.as_ref().map(|(link, _)| link);
            let Some(checkpoints) = checkpoints else {
                return training::train_judged(
                    &spec,
                    &dataset,
                    &device,
                    &mut on_progress,
                    &training_cancel,
                    None,
                    judged(link, &mut judge),
                );
            };
            let mut sink = |c: Checkpoint| {
                checkpoints.sent.send_replace(Some(c));
            };
            let mut run = |from: Option<Checkpoint>| {
                let checkpointing = Checkpointing {
                    from,
                    every: checkpoints.every,
                    save_now: checkpoints.save_now.clone(),
                    sink: &mut sink,
                };
                let (progress, cancel) = (&mut on_progress, &training_cancel);
                training::train_judged(
                    &spec,
                    &dataset,
                    &device,
                    progress,
                    cancel,
                    Some(checkpointing),
                    judged(link, &mut judge),
                )
            };
            match run(checkpoints.from.clone()) {
                Err(TrainError::Checkpoint(e)) => {
                    tracing::warn!(error = %e, "the task's checkpoint does not fit; training afresh");
                    run(None)
                }
                ended => ended,
            }
        });
        let attempt = Attempt {
            store: &*store,
            id: task.id,
            attempt: task.attempt,
            cancel: &cancel,
            stop: &stop,
            save_now: &save_now,
            max_bytes,
        };
        let Some((joined, mut last_progress, wrote, saved)) = attempt
            .watch(training, progress_rx, checkpoint_rx, renew_every, hard_at)
            .await
        else {
            // Past the hard limit: the thread is left behind (its writes are fenced).
            let _ = myself.cast(TrainerMsg::HardLimit {
                id: task.id,
                attempt: task.attempt,
                after_s: hard_limit_s,
            });
            return;
        };
        // A success writes its last progress with its result (one write less); any other end
        // writes it now.
        let mut stored = stored.filter(|_| !wrote && !resumed);
        if !matches!(joined, Ok(Ok(_)))
            && let Some(progress) = last_progress.take()
        {
            write_one(&*store, task.id, task.attempt, progress).await;
            stored = None;
        }
        let outcome = match joined {
            Ok(result) => Ended::Done(result),
            Err(e) => classify_panic(e.to_string(), device),
        };
        let _ = myself.cast(TrainerMsg::Ended {
            task: Box::new(task),
            outcome,
            last_progress,
            stored,
            checkpointed: resumed || saved,
        });
    };
    tokio::spawn(run.instrument(span));
}

/// The rungs of a sweep's trial (`link` is None for any other task), judged by `judge`.
fn judged<'a>(
    link: Option<&'a SweepLink>,
    judge: &'a mut dyn FnMut(u64, f64) -> bool,
) -> Option<training::Rungs<'a>> {
    link.map(|link| training::Rungs {
        metric: link.metric,
        at: &link.rungs,
        judge,
    })
}

/// How the training thread checkpoints: from where, how often, and where it sends them.
struct Checkpoints {
    from: Option<Checkpoint>,
    every: Duration,
    save_now: SaveNow,
    /// The latest checkpoint for the attempt's task to write (a newer one replaces one not
    /// written yet).
    sent: watch::Sender<Option<Checkpoint>>,
}

/// The checkpoint attempt `attempt` of task `id` resumes from, if an earlier one left one
/// (a store that cannot say is logged: the training starts afresh).
async fn resume_from<S: Store>(store: &S, id: Uuid, attempt: u32) -> Option<Checkpoint> {
    match store.resume_from(id, attempt).await {
        Ok(Some(checkpoint)) => {
            tracing::info!(
                step = checkpoint.step,
                "resuming from the task's checkpoint"
            );
            telemetry::checkpoint("resumed");
            Some(checkpoint)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the task's checkpoint; training afresh");
            None
        }
    }
}

/// Where a task's data comes from.
enum Source {
    /// A built-in data set, generated from the task's seed.
    Builtin,
    /// An uploaded data set this node has parsed before.
    Parsed(Arc<Dataset>),
    /// An uploaded data set read from the store, to parse (and keep parsed).
    Csv {
        id: Uuid,
        info: DatasetInfo,
        csv: Arc<[u8]>,
    },
}

/// The attempt a training thread runs, as its task on the runtime looks after it.
struct Attempt<'a, S> {
    store: &'a S,
    id: Uuid,
    attempt: u32,
    cancel: &'a CancelToken,
    /// The node's stop: once it comes, the training saves a checkpoint at its next boundary.
    stop: &'a Stop,
    save_now: &'a SaveNow,
    /// Largest checkpoint written.
    max_bytes: u64,
}

impl<S: Store> Attempt<'_, S> {
    /// Waits for `training` to end while renewing the attempt's lease every `renew_every`
    /// (a cancel request, or a lost lease, cancels the training) and writing its latest
    /// progress, at most every `PROGRESS_EVERY`. One timer does it all, so a training that ends
    /// in a few milliseconds costs no wake-up but its end.
    ///
    /// Checkpoints are written as they come (`checkpoints`), and one asked for once the
    /// node stops.
    ///
    /// Returns how the training ended, its last progress if not written, whether any
    /// progress was written, and whether a checkpoint was; None if it ran past `hard_at`.
    async fn watch(
        &self,
        training: tokio::task::JoinHandle<Result<TrainOutcome, TrainError>>,
        mut progress: watch::Receiver<Option<training::Progress>>,
        mut checkpoints: watch::Receiver<Option<Checkpoint>>,
        renew_every: Duration,
        hard_at: Instant,
    ) -> Option<(
        Result<Result<TrainOutcome, TrainError>, tokio::task::JoinError>,
        Option<TaskProgress>,
        bool,
        bool,
    )> {
        let start = Instant::now();
        let mut next_write = start + FIRST_WRITE_AFTER;
        let mut next_renew = start + renew_every;
        let mut renewing = true;
        let mut wrote = false;
        let mut saved = false;
        let mut stop_seen = false;
        // Closed when the training ends without checkpoints: no more to wait for.
        let mut checkpointing = true;
        tokio::pin!(training);
        let joined = loop {
            let wake = next_write.min(hard_at);
            let wake = if renewing { wake.min(next_renew) } else { wake };
            tokio::select! {
                joined = &mut training => break joined,
                changed = checkpoints.changed(), if checkpointing => {
                    match changed {
                        Ok(()) => {
                            let latest = checkpoints.borrow_and_update().clone();
                            if let Some(checkpoint) = latest {
                                saved |= self.write_checkpoint(&checkpoint).await;
                            }
                        }
                        Err(_) => checkpointing = false,
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            if !stop_seen && self.stop.is_stopping() {
                stop_seen = true;
                tracing::info!("the node stops: checkpointing at the next boundary");
                self.save_now.request();
            }
            let now = Instant::now();
            if now >= hard_at {
                return None;
            }
            if renewing && now >= next_renew {
                next_renew = now + renew_every;
                renewing = self.renew().await;
            }
            if now >= next_write {
                next_write = now + PROGRESS_EVERY;
                if let Some(report) = unseen(&mut progress) {
                    write_one(self.store, self.id, self.attempt, task_progress(report)).await;
                    wrote = true;
                }
            }
        };
        Some((
            joined,
            unseen(&mut progress).map(task_progress),
            wrote,
            saved,
        ))
    }

    /// Writes a checkpoint, if it is not over the bound; true if it was kept.
    async fn write_checkpoint(&self, checkpoint: &Checkpoint) -> bool {
        let bytes = checkpoint.bytes.len() as u64;
        if bytes > self.max_bytes {
            tracing::warn!(
                bytes,
                max_bytes = self.max_bytes,
                "checkpoint over tasks.checkpoint_max_bytes; not kept"
            );
            telemetry::checkpoint("too_large");
            return false;
        }
        match self
            .store
            .put_checkpoint(self.id, self.attempt, checkpoint)
            .await
        {
            Ok(true) => {
                tracing::debug!(step = checkpoint.step, bytes, "checkpoint kept");
                telemetry::checkpoint("saved");
                true
            }
            Ok(false) => {
                telemetry::checkpoint("fenced");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write a checkpoint");
                telemetry::checkpoint("failed");
                false
            }
        }
    }

    /// Renews the lease; false once it is lost (the task was requeued and runs elsewhere).
    async fn renew(&self) -> bool {
        match self.store.renew(self.id, self.attempt).await {
            Ok(Renewal::Held { cancel: false }) => {}
            Ok(Renewal::Held { cancel: true }) => self.cancel.cancel(),
            Ok(Renewal::Lost) => {
                tracing::warn!("this attempt lost its lease (the task was requeued); stopping it");
                self.cancel.cancel();
                return false;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the task's lease"),
        }
        true
    }
}

/// The latest progress report, if not seen before (also once the training dropped its end).
fn unseen(
    progress: &mut watch::Receiver<Option<training::Progress>>,
) -> Option<training::Progress> {
    let latest = progress.borrow_and_update();
    if latest.has_changed() {
        latest.clone()
    } else {
        None
    }
}

fn task_progress(p: training::Progress) -> TaskProgress {
    TaskProgress {
        current: p.current,
        total: p.total,
        percent: (p.percent() * 100.0).round() / 100.0,
        message: p.message,
        loss: p.loss,
    }
}

async fn write_one<S: Store>(store: &S, id: Uuid, attempt: u32, progress: TaskProgress) {
    if let Err(e) = store.progress(id, attempt, &progress).await {
        tracing::warn!(error = %e, "cannot write progress");
    }
}
