//! Checkpoints: a training's state at a step boundary, from which [`train_resumable`]
//! continues as if it had never stopped.
//!
//! A checkpoint holds the models of the task already trained (as an artifact, `artifact.rs`)
//! and the state of the one in training:
//!
//! - a burn network after an epoch: every layer's weight and bias, each with its Adam moments
//!   and step count, the epoch and its loss. The batch order is not stored: it is replayed
//!   from the seed (one shuffle per epoch done, far cheaper than the epochs themselves), so
//!   the random state after epoch `e` is exactly the one an uninterrupted fit has;
//! - gradient-boosted trees after a booster of the chain (`trees.rs`): the boosters fitted so
//!   far. The residual the next booster fits is recomputed from them in the same order of
//!   subtractions, so it is the same to the last bit (forust's JSON keeps every float).
//!
//! Steps count as [`Progress::current`](super::Progress) does: epochs and trees over every
//! model of the task. Encoded with bincode over serde, behind a magic and a version.
//!
//! [`train_resumable`]: super::train_resumable

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{ModelType, TrainError};

const MAGIC: &[u8; 8] = b"TYCKPT01";
/// Largest allocation a decoded checkpoint may claim, so corrupt bytes cannot make it
/// allocate wildly.
const MAX_DECODED_BYTES: usize = 1 << 31;

/// A training's state after `step` steps, as bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Steps done: epochs and trees over every model of the task.
    pub step: u64,
    /// The encoded state (`Checkpoint::encode`).
    pub bytes: Vec<u8>,
}

/// Asks a running training to save a checkpoint at its next step boundary, whatever the
/// time since the last one (a graceful stop).
#[derive(Debug, Clone, Default)]
pub struct SaveNow(Arc<AtomicBool>);

impl SaveNow {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a save was asked for since the last take; clears the request.
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// How a training saves checkpoints, and the one it starts from.
pub struct Checkpointing<'a> {
    /// The checkpoint to continue from, if any.
    pub from: Option<Checkpoint>,
    /// Least time between two checkpoints.
    pub every: Duration,
    /// Saves one at the next boundary when requested.
    pub save_now: SaveNow,
    /// Receives each checkpoint (on the training thread: it should only hand it on).
    pub sink: &'a mut dyn FnMut(Checkpoint),
}

/// The state of a whole training: the models done, and the one in training.
#[derive(Serialize, Deserialize)]
pub(super) struct State {
    /// The models of the task trained so far, as an artifact (None: none yet).
    pub done: Option<Vec<u8>>,
    /// Each done model's last epoch loss (original scale) and fit seconds, in order.
    pub done_fits: Vec<DoneFit>,
    /// The model in training and its state.
    pub current: Option<(ModelType, MemberState)>,
}

/// What the metrics of a model done need besides its predictions.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct DoneFit {
    pub final_loss: Option<f64>,
    pub fit_s: f64,
}

/// A model's training state at a step boundary.
#[derive(Clone, Serialize, Deserialize)]
pub(super) enum MemberState {
    Neural(NeuralState),
    Trees(TreesState),
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct NeuralState {
    /// Epochs done.
    pub epoch: u32,
    /// The last epoch's loss (standardised scale).
    pub last_epoch_loss: f64,
    /// Each layer's weight and bias.
    pub layers: Vec<(ParamState, ParamState)>,
    /// Seconds spent fitting so far.
    pub fit_s: f64,
}

/// A parameter's values and its Adam state.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct ParamState {
    pub shape: Vec<u64>,
    pub values: Vec<f32>,
    /// Adam's step count and first and second moments, after the first step.
    pub adam: Option<(u64, Vec<f32>, Vec<f32>)>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct TreesState {
    /// Trees done.
    pub trees: u32,
    /// forust's JSON of each booster of the chain so far.
    pub stages: Vec<String>,
    /// Seconds spent fitting so far.
    pub fit_s: f64,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODED_BYTES>()
}

impl State {
    pub(super) fn encode(&self) -> Result<Vec<u8>, TrainError> {
        let mut out = MAGIC.to_vec();
        bincode::serde::encode_into_std_write(self, &mut out, config())
            .map_err(|e| TrainError::Backend(format!("cannot encode a checkpoint: {e}")))?;
        Ok(out)
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<State, TrainError> {
        let invalid = |m: String| TrainError::InvalidModel(format!("checkpoint: {m}"));
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| invalid("not a trainyard checkpoint (bad magic)".into()))?;
        let (state, read) = bincode::serde::decode_from_slice(rest, config())
            .map_err(|e| invalid(e.to_string()))?;
        if read != rest.len() {
            return Err(invalid("trailing bytes".into()));
        }
        Ok(state)
    }
}

/// When a training saves checkpoints: the policy and the sink, as its loops see them.
pub(super) struct Saver<'a> {
    every: Duration,
    save_now: SaveNow,
    sink: &'a mut dyn FnMut(Checkpoint),
    last: Instant,
    /// The models done so far, encoded once each is done.
    pub done: Option<Vec<u8>>,
    pub done_fits: Vec<DoneFit>,
}

impl<'a> Saver<'a> {
    pub(super) fn new(
        every: Duration,
        save_now: SaveNow,
        sink: &'a mut dyn FnMut(Checkpoint),
    ) -> Self {
        Saver {
            every,
            save_now,
            sink,
            last: Instant::now(),
            done: None,
            done_fits: Vec::new(),
        }
    }

    /// Whether a checkpoint is due at this boundary: `every` since the last, or one asked for.
    pub(super) fn due(&mut self) -> bool {
        self.save_now.take() || self.last.elapsed() >= self.every
    }

    /// Hands on the checkpoint of `current` after `step` steps of the task.
    pub(super) fn save(
        &mut self,
        step: u64,
        current: (ModelType, MemberState),
    ) -> Result<(), TrainError> {
        self.last = Instant::now();
        let state = State {
            done: self.done.clone(),
            done_fits: self.done_fits.clone(),
            current: Some(current),
        };
        let bytes = state.encode()?;
        (self.sink)(Checkpoint { step, bytes });
        Ok(())
    }
}
