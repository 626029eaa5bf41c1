//! The errors of the training library: one enum for training, one for data.

use thiserror::Error;

/// Why a data set could not be read or used. Positions are 1-based: `line` counts the header as
/// line 1, so it matches what an editor shows.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DataError {
    #[error("csv is empty: it has no header line")]
    Empty,
    #[error("csv has a header but no data rows")]
    NoRows,
    #[error("csv line {line}: not valid UTF-8 in column {column}")]
    NotUtf8 { line: u64, column: String },
    #[error("csv line {line}: expected {expected} fields as in the header, found {found}")]
    Ragged {
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("csv line {line}, column {column:?}: {value:?} is not a number")]
    NotNumeric {
        line: u64,
        column: String,
        value: String,
    },
    #[error("csv line {line}, column {column:?}: {value:?} is not a finite number")]
    NotFinite {
        line: u64,
        column: String,
        value: String,
    },
    #[error("target column {target:?} not found; columns are: {}", columns.join(", "))]
    MissingTarget {
        target: String,
        columns: Vec<String>,
    },
    #[error("csv header names column {column:?} twice")]
    DuplicateColumn { column: String },
    #[error("csv header has an empty column name at column {index}")]
    EmptyColumnName { index: usize },
    #[error("csv has {found} columns; at most {max} are allowed")]
    TooManyColumns { found: usize, max: usize },
    #[error("csv has more than {max} data rows")]
    TooManyRows { max: usize },
    #[error("data set needs at least one feature column besides the target")]
    NoFeatures,
    #[error("csv could not be read: {0}")]
    Malformed(String),
    #[error("unknown data set {name:?}; built-in data sets are: {}", known.join(", "))]
    UnknownDataset { name: String, known: Vec<String> },
    #[error(
        "data set has {rows} rows; a test fraction of {test_fraction} leaves {train} for training and {test} for testing, and each needs at least {min}"
    )]
    TooFewRows {
        rows: usize,
        test_fraction: f64,
        train: usize,
        test: usize,
        min: usize,
    },
}

/// Why a training (or a prediction) did not produce a result.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TrainError {
    /// The spec breaks one or more rules; every problem is listed.
    #[error("invalid training spec: {}", problems.join("; "))]
    InvalidSpec { problems: Vec<String> },
    #[error("invalid data: {0}")]
    Data(#[from] DataError),
    #[error("training cancelled")]
    Cancelled,
    #[error("training exceeded its time limit of {limit_s} s")]
    DeadlineExceeded { limit_s: f64 },
    #[error("training diverged: loss is not finite at epoch {epoch}; try a lower learning rate")]
    Diverged { epoch: u32 },
    #[error("device {device:?} is not available: {reason}")]
    DeviceUnavailable { device: String, reason: String },
    #[error(
        "device {device} ran out of memory; lower batch_size or hidden_sizes, or ask for another device"
    )]
    OutOfMemory { device: String },
    #[error("model artifact is invalid: {0}")]
    InvalidModel(String),
    #[error("prediction input is invalid: {0}")]
    InvalidInput(String),
    #[error("training backend failed: {0}")]
    Backend(String),
    /// A checkpoint does not fit the training (refused before any step: start afresh).
    #[error("checkpoint cannot be resumed: {0}")]
    Checkpoint(String),
}

impl TrainError {
    /// Whether running the same training again could succeed. Bad specs, bad data, a cancel, a
    /// divergence and a time limit give the same answer every time; a backend failure may not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TrainError::Backend(_)
                | TrainError::DeviceUnavailable { .. }
                | TrainError::Checkpoint(_)
        )
    }

    /// A short, stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TrainError::InvalidSpec { .. } => "invalid_spec",
            TrainError::Data(_) => "invalid_data",
            TrainError::Cancelled => "cancelled",
            TrainError::DeadlineExceeded { .. } => "time_limit",
            TrainError::Diverged { .. } => "diverged",
            TrainError::DeviceUnavailable { .. } => "device_unavailable",
            TrainError::OutOfMemory { .. } => "device_out_of_memory",
            TrainError::InvalidModel(_) => "invalid_model",
            TrainError::InvalidInput(_) => "invalid_input",
            TrainError::Backend(_) => "backend_error",
            TrainError::Checkpoint(_) => "checkpoint_unusable",
        }
    }
}
