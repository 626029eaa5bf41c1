//! Gradient-boosted regression trees, from the `forust-ml` crate.
//!
//! forust fits every tree of a booster in one call, with no hook between trees. For squared
//! loss, boosting is additive: trees fitted on the residual `y - prediction` starting from 0
//! are exactly the trees a single booster would go on to fit. So the ensemble is fitted as a
//! chain of boosters of a few trees each, with the progress report and the cancel and deadline
//! checks between them, and a prediction is the sum of the chain's predictions.
//!
//! forust cannot go on fitting a booster it has saved, so checkpoints, too, fall between the
//! boosters of the chain (when one is due). A resumed fit loads the boosters from forust's
//! JSON (which keeps every float) and recomputes the residual from their predictions, in the
//! same order of subtractions, and every booster is fitted with the same seed: the boosters
//! that follow are bit for bit those of an uninterrupted fit, so resume is exact for the
//! chain, which is how every tree training here is fitted (checked by
//! `a_fit_resumed_from_a_checkpoint_is_the_uninterrupted_fit` in `training/tests.rs`). How
//! close a chain is to one forust booster of as many trees is the claim above, not resume's.

use std::time::Instant;

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};

use super::checkpoint::{MemberState, TreesState};
use super::data::Split;
use super::{Control, GbdtParams, TrainError};

/// Trees per booster in the chain: progress and cancel checks come this often.
const TREES_PER_STAGE: u32 = 20;
/// Histogram bins per feature.
const BINS: u16 = 256;

/// A fitted ensemble: boosters whose predictions add up.
pub struct TreeModel {
    stages: Vec<GradientBooster>,
    cols: usize,
}

/// The model and the seconds spent fitting.
pub struct Fitted {
    pub model: TreeModel,
    pub fit_s: f64,
}

/// Fits the chain on `train`, from `resume` (a checkpoint's state) if given.
pub fn fit(
    train: &Split,
    params: &GbdtParams,
    seed: u64,
    resume: Option<&TreesState>,
    control: &mut Control<'_>,
) -> Result<Fitted, TrainError> {
    let started = Instant::now();
    let (rows, cols) = (train.rows(), train.cols);
    let x = column_major(&train.x, rows, cols);
    let matrix = Matrix::new(&x, rows, cols);
    let y: Vec<f64> = train.y.iter().map(|&v| v as f64).collect();
    let mut residual = y.clone();
    let mut stages = Vec::new();
    let (mut done, mut fit_before_s) = (0, 0.0);
    if let Some(saved) = resume {
        if saved.trees > params.n_trees {
            return Err(TrainError::Checkpoint(format!(
                "{} trees of {}",
                saved.trees, params.n_trees
            )));
        }
        for json in &saved.stages {
            let booster = GradientBooster::from_json(json)
                .map_err(|e| TrainError::Checkpoint(format!("trees: {e}")))?;
            for (r, p) in residual.iter_mut().zip(booster.predict(&matrix, false)) {
                *r -= p;
            }
            stages.push(booster);
        }
        (done, fit_before_s) = (saved.trees, saved.fit_s);
    }
    while done < params.n_trees {
        control.check()?;
        // A stage ends at each rung, to be judged there.
        let to_rung = control
            .next_rung_after(done as u64)
            .map_or(u32::MAX, |r| (r - done as u64) as u32);
        let trees = TREES_PER_STAGE.min(params.n_trees - done).min(to_rung);
        let first = stages.is_empty();
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::SquaredLoss)
            .set_iterations(trees as usize)
            .set_learning_rate(params.learning_rate as f32)
            .set_max_depth(params.max_depth as usize)
            .set_min_leaf_weight(params.min_samples_leaf as f32)
            .set_nbins(BINS)
            .set_seed(seed)
            .set_parallel(false)
            .set_initialize_base_score(first)
            .set_base_score(0.0);
        booster
            .fit_unweighted(&matrix, &residual, None)
            .map_err(|e| TrainError::Backend(format!("gradient boosting failed: {e}")))?;
        for (r, p) in residual.iter_mut().zip(booster.predict(&matrix, false)) {
            *r -= p;
        }
        stages.push(booster);
        done += trees;
        control.tree_done(done, params.n_trees);
        if control.rung_at(done as u64)
            && let Some(x) = control.validation_x()
        {
            let predictions = predict_stages(&stages, x, cols);
            if !control.judge(done as u64, &predictions) {
                break;
            }
        }
        if done < params.n_trees && control.checkpoint_due() {
            let state = TreesState {
                trees: done,
                stages: dump(&stages)?,
                fit_s: fit_before_s + started.elapsed().as_secs_f64(),
            };
            control.save_checkpoint(done as u64, MemberState::Trees(state))?;
        }
    }
    Ok(Fitted {
        model: TreeModel { stages, cols },
        fit_s: fit_before_s + started.elapsed().as_secs_f64(),
    })
}

impl TreeModel {
    /// Predictions for raw row-major `x`.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        predict_stages(&self.stages, x, self.cols)
    }

    /// The chain as a JSON array of forust's own booster JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        serde_json::to_vec(&dump(&self.stages)?)
            .map_err(|e| TrainError::Backend(format!("cannot save trees: {e}")))
    }

    pub fn from_bytes(bytes: &[u8], cols: usize) -> Result<Self, TrainError> {
        let invalid = |e: String| TrainError::InvalidModel(format!("trees: {e}"));
        let stages: Vec<String> =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if stages.is_empty() {
            return Err(invalid("no boosters".into()));
        }
        let stages = stages
            .iter()
            .map(|s| GradientBooster::from_json(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(TreeModel { stages, cols })
    }
}

/// forust's JSON of each booster.
fn dump(stages: &[GradientBooster]) -> Result<Vec<String>, TrainError> {
    stages
        .iter()
        .map(|b| b.json_dump())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Backend(format!("cannot save trees: {e}")))
}

/// forust reads features column by column.
/// The sum of `stages`' predictions for raw row-major `x`.
fn predict_stages(stages: &[GradientBooster], x: &[f32], cols: usize) -> Vec<f32> {
    let rows = x.len() / cols;
    let data = column_major(x, rows, cols);
    let matrix = Matrix::new(&data, rows, cols);
    let mut sum = vec![0.0f64; rows];
    for stage in stages {
        for (s, p) in sum.iter_mut().zip(stage.predict(&matrix, false)) {
            *s += p;
        }
    }
    sum.into_iter().map(|v| v as f32).collect()
}

fn column_major(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for (r, row) in x.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v as f64;
        }
    }
    out
}
