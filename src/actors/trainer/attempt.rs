//! An attempt of a task on a trainer: its data loaded (built in, parsed before, or read from
//! the store and parsed), its training run on tokio's blocking pool, its lease renewed and its
//! progress written while it trains, and its end sent back to the trainer as `Ended`.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::TrainerArgs;
use super::outcome::classify_panic;
use crate::actors::{Ended, TrainerMsg};
use crate::store::{CasToken, DatasetInfo, Renewal, Store, TaskProgress, TaskRecord};
use crate::training::{self, CancelToken, Dataset, TrainError, TrainOutcome};

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
        let training = tokio::task::spawn_blocking(move || {
            if hang_now {
                std::thread::sleep(Duration::from_secs(60));
            }
            if panic_now {
                panic!("test hook {PANIC_SEED_ENV} asked for a panic");
            }
            let dataset = match source {
                Source::Parsed(parsed) => parsed,
                Source::Csv { id, info, csv } => {
                    datasets.put(id, Dataset::from_csv(&csv, &info.name, &info.target)?)
                }
                Source::Builtin => Arc::new(Dataset::builtin(&spec.dataset, spec.seed)?),
            };
            training::train(
                &spec,
                &dataset,
                &device,
                // Only stored here: the watch wakes no one, the attempt's task reads it on
                // its own timer.
                &mut |p| {
                    progress_tx.send_replace(Some(p.clone()));
                },
                &training_cancel,
            )
        });
        let attempt = Attempt {
            store: &*store,
            id: task.id,
            attempt: task.attempt,
            cancel: &cancel,
        };
        let Some((joined, mut last_progress, wrote)) = attempt
            .watch(training, progress_rx, renew_every, hard_at)
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
        let mut stored = stored.filter(|_| !wrote);
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
        });
    };
    tokio::spawn(run.instrument(span));
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
}

impl<S: Store> Attempt<'_, S> {
    /// Waits for `training` to end while renewing the attempt's lease every `renew_every`
    /// (a cancel request, or a lost lease, cancels the training) and writing its latest
    /// progress, at most every `PROGRESS_EVERY`. One timer does it all, so a training that ends
    /// in a few milliseconds costs no wake-up but its end.
    ///
    /// Returns how the training ended, its last progress if not written, and whether any
    /// progress was written; None if it ran past `hard_at`.
    async fn watch(
        &self,
        training: tokio::task::JoinHandle<Result<TrainOutcome, TrainError>>,
        mut progress: watch::Receiver<Option<training::Progress>>,
        renew_every: Duration,
        hard_at: Instant,
    ) -> Option<(
        Result<Result<TrainOutcome, TrainError>, tokio::task::JoinError>,
        Option<TaskProgress>,
        bool,
    )> {
        let start = Instant::now();
        let mut next_write = start + FIRST_WRITE_AFTER;
        let mut next_renew = start + renew_every;
        let mut renewing = true;
        let mut wrote = false;
        tokio::pin!(training);
        let joined = loop {
            let wake = next_write.min(hard_at);
            let wake = if renewing { wake.min(next_renew) } else { wake };
            tokio::select! {
                joined = &mut training => break joined,
                _ = tokio::time::sleep_until(wake) => {}
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
        Some((joined, unseen(&mut progress).map(task_progress), wrote))
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
