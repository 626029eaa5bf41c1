//! The trained model as bytes, and predictions from those bytes.
//!
//! Layout: the magic `TYMODEL1`, a little-endian u32 header length, a JSON header (feature
//! names, which model answers predictions, and for each model its kind, parameters and payload
//! length), then the payloads back to back: burnpack bytes for burn models, the trees crate's
//! own format for gradient boosting.

use serde::{Deserialize, Serialize};

use super::data::Standardizer;
use super::neural::NeuralModel;
use super::trees::TreeModel;
use super::{ModelType, TrainError};

const MAGIC: &[u8; 8] = b"TYMODEL1";
/// Largest JSON header a reader accepts, so a corrupt length cannot make it allocate wildly.
const MAX_HEADER_BYTES: usize = 16 << 20;
/// Most rows one `predict` call takes.
pub const MAX_PREDICT_ROWS: usize = 100_000;

/// One trained model of a task.
pub enum Predictor {
    Neural(NeuralModel),
    Trees(TreeModel),
}

impl Predictor {
    /// Predictions on the original scale for raw row-major `x` of the right width.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        match self {
            Predictor::Neural(m) => m.predict(x),
            Predictor::Trees(m) => m.predict(x),
        }
    }
}

/// What a task trained: one model, or for `all` one per model type and the one whose test R2
/// was best, which answers predictions.
pub struct TrainedModel {
    pub feature_names: Vec<String>,
    pub target_name: String,
    pub models: Vec<(ModelType, Predictor)>,
    /// Index into `models` of the model that answers predictions.
    pub chosen: usize,
}

#[derive(Serialize, Deserialize)]
struct Header {
    feature_names: Vec<String>,
    target_name: String,
    chosen: usize,
    models: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    model_type: ModelType,
    kind: EntryKind,
    payload_bytes: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum EntryKind {
    Neural {
        hidden_sizes: Vec<u32>,
        scaler: Standardizer,
    },
    Trees,
}

impl TrainedModel {
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// The model type that answers predictions.
    pub fn chosen_type(&self) -> ModelType {
        self.models[self.chosen].0
    }

    /// Predicts one value per row, after checking every row's width and values.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, TrainError> {
        if rows.is_empty() {
            return Err(TrainError::InvalidInput("rows must not be empty".into()));
        }
        if rows.len() > MAX_PREDICT_ROWS {
            return Err(TrainError::InvalidInput(format!(
                "at most {MAX_PREDICT_ROWS} rows per call, got {}",
                rows.len()
            )));
        }
        let width = self.n_features();
        let mut x = Vec::with_capacity(rows.len() * width);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != width {
                return Err(TrainError::InvalidInput(format!(
                    "row {i} has {} values; the model takes {width} ({})",
                    row.len(),
                    self.feature_names.join(", ")
                )));
            }
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(TrainError::InvalidInput(format!(
                    "row {i}, value {j} ({}) is not a finite number",
                    self.feature_names[j]
                )));
            }
            x.extend_from_slice(row);
        }
        Ok(self.models[self.chosen].1.predict(&x))
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        encode_models(
            &self.feature_names,
            &self.target_name,
            self.chosen,
            &self.models,
        )
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TrainError> {
        let invalid = |m: &str| TrainError::InvalidModel(m.to_string());
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| invalid("not a trainyard model (bad magic)"))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("truncated header length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_HEADER_BYTES || len > rest.len() {
            return Err(invalid("truncated or oversized header"));
        }
        let (header, mut rest) = rest.split_at(len);
        let header: Header = serde_json::from_slice(header)
            .map_err(|e| TrainError::InvalidModel(format!("bad header: {e}")))?;
        if header.chosen >= header.models.len() || header.feature_names.is_empty() {
            return Err(invalid("header names no usable model"));
        }
        let mut models = Vec::with_capacity(header.models.len());
        for entry in header.models {
            let n = usize::try_from(entry.payload_bytes).unwrap_or(usize::MAX);
            if n > rest.len() {
                return Err(invalid("truncated model payload"));
            }
            let (payload, tail) = rest.split_at(n);
            rest = tail;
            let predictor = match entry.kind {
                EntryKind::Neural {
                    hidden_sizes,
                    scaler,
                } => {
                    if scaler.x_mean.len() != header.feature_names.len()
                        || scaler.x_std.len() != header.feature_names.len()
                    {
                        return Err(invalid("scaler width does not match the features"));
                    }
                    Predictor::Neural(NeuralModel::load(hidden_sizes, scaler, payload)?)
                }
                EntryKind::Trees => {
                    Predictor::Trees(TreeModel::from_bytes(payload, header.feature_names.len())?)
                }
            };
            models.push((entry.model_type, predictor));
        }
        if !rest.is_empty() {
            return Err(invalid("trailing bytes after the last model"));
        }
        Ok(TrainedModel {
            feature_names: header.feature_names,
            target_name: header.target_name,
            models,
            chosen: header.chosen,
        })
    }
}

/// The artifact of `models` (as `TrainedModel::to_bytes`), without owning them: checkpoints
/// keep the models of a task done so far this way.
pub(super) fn encode_models(
    feature_names: &[String],
    target_name: &str,
    chosen: usize,
    models: &[(ModelType, Predictor)],
) -> Result<Vec<u8>, TrainError> {
    let mut entries = Vec::new();
    let mut payloads = Vec::new();
    for (model_type, predictor) in models {
        let (kind, payload) = match predictor {
            Predictor::Neural(m) => (
                EntryKind::Neural {
                    hidden_sizes: m.hidden.clone(),
                    scaler: m.scaler.clone(),
                },
                m.weights()?,
            ),
            Predictor::Trees(m) => (EntryKind::Trees, m.to_bytes()?),
        };
        entries.push(Entry {
            model_type: *model_type,
            kind,
            payload_bytes: payload.len() as u64,
        });
        payloads.push(payload);
    }
    let header = serde_json::to_vec(&Header {
        feature_names: feature_names.to_vec(),
        target_name: target_name.to_string(),
        chosen,
        models: entries,
    })
    .map_err(|e| TrainError::Backend(format!("cannot encode model header: {e}")))?;
    let mut out =
        Vec::with_capacity(12 + header.len() + payloads.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for payload in payloads {
        out.extend_from_slice(&payload);
    }
    Ok(out)
}

/// Predicts with a model artifact: one value per row.
pub fn predict(model_bytes: &[u8], rows: &[Vec<f32>]) -> Result<Vec<f32>, TrainError> {
    TrainedModel::from_bytes(model_bytes)?.predict(rows)
}
