//! The training library: what trainer actors call to train one task.
//!
//! [`train`] takes a validated [`TrainSpec`], a [`Dataset`], a [`DeviceSpec`], a progress
//! callback and a [`CancelToken`], and returns the metrics and the trained model as bytes.
//! It knows nothing of actors, async runtimes or stores: its only I/O is its arguments.
//!
//! - `spec`: the request and its bounds; `footprint`: what a training needs, estimated;
//! - `data` and `csv`: data sets, the split, scaling;
//! - `neural`: burn MLP and linear regression; `trees`: gradient-boosted trees;
//! - `noop`: the benchmark type that trains nothing;
//! - `metrics`: R2, RMSE; `artifact`: model bytes and `predict`;
//! - `checkpoint`: a training's state at a step boundary, which [`train_resumable`] saves
//!   and continues from.

mod artifact;
mod checkpoint;
mod csv;
mod data;
mod device;
pub mod device_kind;
mod error;
mod footprint;
mod metrics;
mod neural;
pub mod noop;
mod spec;
mod trees;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use artifact::{MAX_PREDICT_ROWS, Predictor, TrainedModel, predict};
pub use checkpoint::{Checkpoint, Checkpointing, SaveNow};
pub use csv::{MAX_CSV_COLUMNS, MAX_CSV_ROWS};
pub use data::{BUILTIN_DATASETS, Dataset, FRIEDMAN1_DEFAULT_ROWS, Split, Standardizer};
pub use device::{DeviceClass, DeviceSpec, gpu_count, resolve_devices};
pub use error::{DataError, TrainError};
pub use footprint::{Footprint, builtin_shape};
pub use metrics::{Metrics, ValMetric, mse, r2, rmse};
pub use spec::{GbdtParams, ModelType, TrainSpec, limits};

/// Asks a running training to stop; it returns [`TrainError::Cancelled`] at the next batch.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How far a training has come. `current` and `total` count epochs and trees over every model
/// of the task, so `all` moves one bar from 0 to 100%.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub model_type: ModelType,
    pub current: u64,
    pub total: u64,
    /// For example `Training epoch 250/500`.
    pub message: String,
    /// The loss of the last epoch (mean squared error, original scale), when there is one.
    pub loss: Option<f64>,
}

impl Progress {
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.current as f64 / self.total as f64
        }
    }
}

/// What one model of a task scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    pub model_type: ModelType,
    pub metrics: Metrics,
}

/// A finished training.
pub struct TrainOutcome {
    pub model_type: ModelType,
    /// One report per model trained, in training order.
    pub reports: Vec<ModelReport>,
    /// The model that answers predictions (the best test R2 for `all`).
    pub best: ModelType,
    pub model: TrainedModel,
    /// `model` as bytes, for [`predict`] and for storage.
    pub model_bytes: Vec<u8>,
    pub duration_s: f64,
    /// The step (epoch or tree) a judge stopped the training at (see [`Rungs`]).
    pub stopped_at: Option<u64>,
}

impl TrainOutcome {
    /// The metrics of the model that answers predictions.
    pub fn metrics(&self) -> &Metrics {
        &self
            .reports
            .iter()
            .find(|r| r.model_type == self.best)
            .expect("best is one of the reports")
            .metrics
    }

    /// The result message the old API gave, e.g. `MLP model trained successfully`.
    pub fn message(&self) -> String {
        match self.model_type {
            ModelType::All => "All models trained successfully".to_string(),
            model => success_message(model.title()),
        }
    }

    /// Metrics as the API shows them: flat for one model, keyed by model type for `all`.
    pub fn metrics_json(&self) -> serde_json::Value {
        if self.model_type == ModelType::All {
            let mut map = serde_json::Map::new();
            for report in &self.reports {
                map.insert(
                    report.model_type.to_string(),
                    serde_json::to_value(&report.metrics).expect("metrics serialize"),
                );
            }
            map.insert("best_model".into(), self.best.as_str().into());
            map.insert("duration_s".into(), self.duration_s.into());
            serde_json::Value::Object(map)
        } else {
            serde_json::to_value(self.metrics()).expect("metrics serialize")
        }
    }
}

/// Where a training stops to be judged on its validation rows (a sweep's rungs, for early
/// stopping), and who judges it.
pub struct Rungs<'a> {
    pub metric: ValMetric,
    /// Steps (epochs, or trees) after which the metric is reported, ascending.
    pub at: &'a [u64],
    /// Told each rung's step and the metric there; false stops the training at that step,
    /// which then ends as if it had been asked for that many steps (`stopped_at` says so).
    pub judge: &'a mut dyn FnMut(u64, f64) -> bool,
}

/// The checks and reports a model's training loop makes between batches, and the
/// checkpoints it saves.
pub struct Control<'a> {
    cancel: &'a CancelToken,
    deadline: Option<(Instant, f64)>,
    on_progress: &'a mut dyn FnMut(&Progress),
    model_type: ModelType,
    /// The model in training (one of `model_type`'s members).
    member: ModelType,
    prefix: &'static str,
    done_before: u64,
    total: u64,
    saver: Option<checkpoint::Saver<'a>>,
    /// Where the training is judged (only with validation rows).
    rungs: Option<Rungs<'a>>,
    /// The rows held out for validation metrics, if the spec asks for them.
    validation: Option<Split>,
    /// The step a judge stopped the training at.
    stopped_at: Option<u64>,
}

impl Control<'_> {
    /// Fails if the training was cancelled or ran past its time limit.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.cancel.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        if let Some((deadline, limit_s)) = self.deadline
            && Instant::now() >= deadline
        {
            return Err(TrainError::DeadlineExceeded { limit_s });
        }
        Ok(())
    }

    fn report(&mut self, step: u64, message: String, loss: Option<f64>) {
        (self.on_progress)(&Progress {
            model_type: self.model_type,
            current: self.done_before + step,
            total: self.total,
            message: format!("{}{message}", self.prefix),
            loss,
        });
    }

    pub fn epoch_done(&mut self, epoch: u32, epochs: u32, loss: f64) {
        self.report(
            epoch as u64,
            format!("Training epoch {epoch}/{epochs}"),
            Some(loss),
        );
    }

    pub fn tree_done(&mut self, tree: u32, trees: u32) {
        self.report(tree as u64, format!("Training tree {tree}/{trees}"), None);
    }

    /// Whether the training is judged after `step`.
    fn rung_at(&self, step: u64) -> bool {
        self.rungs.as_ref().is_some_and(|r| r.at.contains(&step))
    }

    /// The first rung after `step`, if the training is judged.
    fn next_rung_after(&self, step: u64) -> Option<u64> {
        self.rungs.as_ref()?.at.iter().copied().find(|&r| r > step)
    }

    /// The validation rows' features, when the training is judged.
    fn validation_x(&self) -> Option<&[f32]> {
        self.rungs.as_ref()?;
        self.validation.as_ref().map(|v| v.x.as_slice())
    }

    /// Judges the training after `step` by its `predictions` of the validation rows; false
    /// if it stops there.
    fn judge(&mut self, step: u64, predictions: &[f32]) -> bool {
        let (Some(rungs), Some(validation)) = (&mut self.rungs, &self.validation) else {
            return true;
        };
        let value = rungs.metric.of(&validation.y, predictions);
        let go_on = (rungs.judge)(step, value);
        if !go_on {
            self.stopped_at = Some(step);
        }
        go_on
    }

    /// Whether a checkpoint is due at this step boundary.
    fn checkpoint_due(&mut self) -> bool {
        self.saver.as_mut().is_some_and(|s| s.due())
    }

    /// Saves the model in training's `state` after `step` of its steps.
    fn save_checkpoint(
        &mut self,
        step: u64,
        state: checkpoint::MemberState,
    ) -> Result<(), TrainError> {
        match &mut self.saver {
            Some(saver) => saver.save(self.done_before + step, (self.member, state)),
            None => Ok(()),
        }
    }
}

/// Trains the model(s) `spec` asks for on `dataset` and scores them on a held-out split.
///
/// Checks `cancel` and the spec's time limit between batches (and between trees), calls
/// `on_progress` after every epoch and every tree. Validation problems are listed all at once.
pub fn train(
    spec: &TrainSpec,
    dataset: &Dataset,
    device: &DeviceSpec,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
) -> Result<TrainOutcome, TrainError> {
    train_resumable(spec, dataset, device, on_progress, cancel, None)
}

/// As [`train`], saving checkpoints and starting from one as `checkpointing` says.
///
/// Resumed or not, the same spec, data set and seed give the same metrics (but for the
/// timings) and the same model. A checkpoint that does not fit the spec is refused with
/// [`TrainError::Checkpoint`] before any training: the caller may start afresh.
pub fn train_resumable<'a>(
    spec: &TrainSpec,
    dataset: &Dataset,
    device: &DeviceSpec,
    on_progress: &'a mut dyn FnMut(&Progress),
    cancel: &'a CancelToken,
    checkpointing: Option<Checkpointing<'a>>,
) -> Result<TrainOutcome, TrainError> {
    train_judged(
        spec,
        dataset,
        device,
        on_progress,
        cancel,
        checkpointing,
        None,
    )
}

/// As [`train_resumable`], judged at `rungs` on the validation rows (the spec's
/// `validation_fraction` of the training rows, which the model is then not fitted on).
/// A judge that says stop ends the training at that step with its model and metrics there.
pub fn train_judged<'a>(
    spec: &TrainSpec,
    dataset: &Dataset,
    device: &DeviceSpec,
    on_progress: &'a mut dyn FnMut(&Progress),
    cancel: &'a CancelToken,
    checkpointing: Option<Checkpointing<'a>>,
    rungs: Option<Rungs<'a>>,
) -> Result<TrainOutcome, TrainError> {
    spec.validate()?;
    if spec.model_type == ModelType::Noop {
        return noop::run(spec, cancel);
    }
    if rungs.is_some() && (spec.validation_fraction.is_none() || spec.model_type == ModelType::All)
    {
        return Err(TrainError::InvalidSpec {
            problems: vec![
                "a judged training needs a validation_fraction and one model type (not all)".into(),
            ],
        });
    }
    let started = Instant::now();
    let deadline = spec
        .time_limit_s
        .map(|s| (started + Duration::from_secs_f64(s), s));
    let burn_device = device.burn_device()?;
    let (train_split, test_split) = dataset.split(spec.test_fraction, spec.seed)?;
    let (train_split, validation) = match spec.validation_fraction {
        Some(fraction) => {
            let (fit, validation) = train_split.hold_out(fraction)?;
            (fit, Some(validation))
        }
        None => (train_split, None),
    };
    let members = spec.model_type.members();
    let steps = |m: &ModelType| match m {
        ModelType::Gbdt => spec.gbdt.n_trees as u64,
        _ => spec.epochs as u64,
    };
    let total = members.iter().map(steps).sum();
    let (resume, saver) = match checkpointing {
        None => (None, None),
        Some(c) => {
            let resume = c.from.map(|from| Resume::of(&from, members)).transpose()?;
            (
                resume,
                Some(checkpoint::Saver::new(c.every, c.save_now, c.sink)),
            )
        }
    };
    let mut control = Control {
        cancel,
        deadline,
        on_progress,
        model_type: spec.model_type,
        member: members[0],
        prefix: "",
        done_before: 0,
        total,
        saver,
        rungs,
        validation,
        stopped_at: None,
    };
    let (mut done, mut done_fits, mut current) = match resume {
        Some(r) => (r.done, r.done_fits, r.current),
        None => (Vec::new(), Vec::new(), None),
    };
    if let Some(saver) = &mut control.saver
        && !done.is_empty()
    {
        saver.done = Some(artifact::encode_models(
            &dataset.feature_names,
            &dataset.target_name,
            0,
            &done,
        )?);
        saver.done_fits = done_fits.clone();
    }
    done.reverse();
    done_fits.reverse();
    let mut reports = Vec::new();
    let mut models = Vec::new();
    for &member in members {
        if spec.model_type == ModelType::All {
            control.prefix = match member {
                ModelType::Mlp => "MLP: ",
                ModelType::Linear => "Linear: ",
                _ => "GBDT: ",
            };
        }
        control.member = member;
        control.check()?;
        let model_started = Instant::now();
        let (predictor, final_loss, fit_s, iterations) = if let Some((_, predictor)) = done.pop() {
            // Trained by an earlier attempt: scored again below, the same way.
            let fit: checkpoint::DoneFit = done_fits.pop().expect("one fit per model done");
            let iterations = steps(&member) as u32;
            (predictor, fit.final_loss, fit.fit_s, iterations)
        } else {
            let resume = current.take();
            match member {
                ModelType::Gbdt => {
                    let saved = match &resume {
                        Some(checkpoint::MemberState::Trees(t)) => Some(t),
                        _ => None,
                    };
                    let fitted =
                        trees::fit(&train_split, &spec.gbdt, spec.seed, saved, &mut control)?;
                    let trees = control.stopped_at.map_or(spec.gbdt.n_trees, |t| t as u32);
                    (Predictor::Trees(fitted.model), None, fitted.fit_s, trees)
                }
                _ => {
                    let hidden: &[u32] = if member == ModelType::Mlp {
                        &spec.hidden_sizes
                    } else {
                        &[]
                    };
                    let saved = match &resume {
                        Some(checkpoint::MemberState::Neural(n)) => Some(n),
                        _ => None,
                    };
                    let params = neural::NeuralParams {
                        hidden,
                        epochs: spec.epochs,
                        learning_rate: spec.learning_rate,
                        batch_size: spec.batch_size as usize,
                        seed: spec.seed,
                    };
                    let fitted =
                        neural::fit(&train_split, &params, saved, &burn_device, &mut control)?;
                    let scale = (fitted.model.scaler.y_std as f64).powi(2);
                    let epochs = control.stopped_at.map_or(spec.epochs, |e| e as u32);
                    (
                        Predictor::Neural(fitted.model),
                        Some(fitted.last_epoch_loss * scale),
                        fitted.fit_s,
                        epochs,
                    )
                }
            }
        };
        control.done_before += steps(&member);
        let train_pred = predictor.predict(&train_split.x);
        let test_pred = predictor.predict(&test_split.x);
        let train_mse = mse(&train_split.y, &train_pred);
        let val = control
            .validation
            .as_ref()
            .map(|v| (v, predictor.predict(&v.x)));
        let val_metric = |metric: ValMetric| val.as_ref().map(|(v, p)| metric.of(&v.y, p));
        let metrics = Metrics {
            train_r2: r2(&train_split.y, &train_pred),
            test_r2: r2(&test_split.y, &test_pred),
            train_rmse: train_mse.sqrt(),
            test_rmse: rmse(&test_split.y, &test_pred),
            final_loss: final_loss.unwrap_or(train_mse),
            duration_s: model_started.elapsed().as_secs_f64(),
            samples_per_s: train_split.rows() as f64 * iterations as f64 / fit_s.max(1e-9),
            train_rows: train_split.rows() as u64,
            test_rows: test_split.rows() as u64,
            iterations,
            val_loss: val_metric(ValMetric::ValLoss),
            val_r2: val_metric(ValMetric::ValR2),
            val_rmse: val_metric(ValMetric::ValRmse),
        };
        reports.push(ModelReport {
            model_type: member,
            metrics,
        });
        models.push((member, predictor));
        // Later checkpoints carry the models done (encoded once, only if there are any).
        if let Some(saver) = &mut control.saver
            && models.len() < members.len()
        {
            saver.done = Some(artifact::encode_models(
                &dataset.feature_names,
                &dataset.target_name,
                0,
                &models,
            )?);
            saver
                .done_fits
                .push(checkpoint::DoneFit { final_loss, fit_s });
        }
    }

    let chosen = reports
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.metrics.test_r2.total_cmp(&b.1.metrics.test_r2))
        .map(|(i, _)| i)
        .expect("at least one model was trained");
    let model = TrainedModel {
        feature_names: dataset.feature_names.clone(),
        target_name: dataset.target_name.clone(),
        models,
        chosen,
    };
    let model_bytes = model.to_bytes()?;
    Ok(TrainOutcome {
        stopped_at: control.stopped_at,
        model_type: spec.model_type,
        best: reports[chosen].model_type,
        reports,
        model,
        model_bytes,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// Where a checkpoint has a training resume: the models done, and the state of the next.
struct Resume {
    done: Vec<(ModelType, Predictor)>,
    done_fits: Vec<checkpoint::DoneFit>,
    current: Option<checkpoint::MemberState>,
}

impl Resume {
    /// The checkpoint `from` of a training of `members`, if it is one.
    fn of(from: &Checkpoint, members: &[ModelType]) -> Result<Resume, TrainError> {
        let refuse = |e: String| TrainError::Checkpoint(e);
        let state = checkpoint::State::decode(&from.bytes).map_err(|e| refuse(e.to_string()))?;
        let done = match &state.done {
            Some(bytes) => {
                TrainedModel::from_bytes(bytes)
                    .map_err(|e| refuse(e.to_string()))?
                    .models
            }
            None => Vec::new(),
        };
        let kinds: Vec<ModelType> = done.iter().map(|(m, _)| *m).collect();
        if !members.starts_with(&kinds) || state.done_fits.len() != done.len() {
            return Err(refuse(format!(
                "it holds models {kinds:?}, the task trains {members:?}"
            )));
        }
        let current = match state.current {
            Some((member, current)) => {
                let fits = match (&current, member) {
                    (checkpoint::MemberState::Trees(_), ModelType::Gbdt) => true,
                    (checkpoint::MemberState::Neural(_), ModelType::Mlp | ModelType::Linear) => {
                        true
                    }
                    _ => false,
                };
                if members.get(done.len()) != Some(&member) || !fits {
                    return Err(refuse(format!(
                        "it trains {member:?} next, the task {:?}",
                        members.get(done.len())
                    )));
                }
                Some(current)
            }
            None => None,
        };
        Ok(Resume {
            done,
            done_fits: state.done_fits,
            current,
        })
    }
}

/// The old API's message for one model trained, named as shown (`MLP`, `TENSORFLOW`).
pub fn success_message(shown_name: &str) -> String {
    format!("{shown_name} model trained successfully")
}

#[cfg(test)]
mod tests;
