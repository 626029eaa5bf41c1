//! What to train, validated up front so that one request cannot exhaust a node.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::TrainError;

/// The model families a task can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// A burn multi-layer perceptron with ReLU hidden layers.
    Mlp,
    /// A burn linear regression.
    Linear,
    /// Gradient-boosted decision trees.
    Gbdt,
    /// Each of the above in one task.
    All,
    /// Trains nothing (after sleeping `sleep_ms`) and keeps no model: for benchmarks of the
    /// queue itself, refused unless `[tasks] allow_noop`.
    Noop,
}

impl ModelType {
    pub const NAMES: [&'static str; 5] = ["mlp", "linear", "gbdt", "all", "noop"];

    pub fn as_str(&self) -> &'static str {
        match self {
            ModelType::Mlp => "mlp",
            ModelType::Linear => "linear",
            ModelType::Gbdt => "gbdt",
            ModelType::All => "all",
            ModelType::Noop => "noop",
        }
    }

    /// The single models this type trains, in training order.
    pub fn members(&self) -> &'static [ModelType] {
        match self {
            ModelType::Mlp => &[ModelType::Mlp],
            ModelType::Linear => &[ModelType::Linear],
            ModelType::Gbdt => &[ModelType::Gbdt],
            ModelType::All => &[ModelType::Mlp, ModelType::Linear, ModelType::Gbdt],
            ModelType::Noop => &[ModelType::Noop],
        }
    }

    /// A display name for messages: "MLP", "Linear", "GBDT", "All".
    pub fn title(&self) -> &'static str {
        match self {
            ModelType::Mlp => "MLP",
            ModelType::Linear => "Linear",
            ModelType::Gbdt => "GBDT",
            ModelType::All => "All",
            ModelType::Noop => "Noop",
        }
    }
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The old FastAPI + Celery service's model names, and the model each trains here: its
/// clients keep working unchanged (`POST /train/tensorflow/async`).
pub const OLD_NAMES: [(&str, ModelType); 3] = [
    ("tensorflow", ModelType::Mlp),
    ("pytorch", ModelType::Mlp),
    ("xgboost", ModelType::Gbdt),
];

impl ModelType {
    /// The model a name trains, and the name itself when it is one of the old service's
    /// (`OLD_NAMES`), to be echoed back to the client that used it.
    pub fn parse_requested(name: &str) -> Result<(ModelType, Option<&'static str>), String> {
        let model = name.parse()?;
        let old = OLD_NAMES
            .iter()
            .map(|(old, _)| *old)
            .find(|old| *old == name);
        Ok((model, old))
    }
}

impl FromStr for ModelType {
    type Err = String;

    /// A model type by its name, or by one of the old service's names (`OLD_NAMES`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mlp" => Ok(ModelType::Mlp),
            "linear" => Ok(ModelType::Linear),
            "gbdt" => Ok(ModelType::Gbdt),
            "all" => Ok(ModelType::All),
            "noop" => Ok(ModelType::Noop),
            _ => OLD_NAMES
                .iter()
                .find(|(old, _)| *old == s)
                .map(|(_, model)| *model)
                .ok_or_else(|| {
                    format!(
                        "unknown model type {s:?}; expected one of {} (or the old names \
                         tensorflow, pytorch, xgboost)",
                        ModelType::NAMES.join(", ")
                    )
                }),
        }
    }
}

/// Parameters of gradient-boosted trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtParams {
    pub n_trees: u32,
    pub learning_rate: f64,
    pub max_depth: u32,
    /// Fewest training rows a leaf may hold.
    pub min_samples_leaf: u32,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            n_trees: 100,
            learning_rate: 0.1,
            max_depth: 6,
            min_samples_leaf: 1,
        }
    }
}

/// Limits on a spec. A request beyond them is refused before any work starts.
pub mod limits {
    pub const MAX_EPOCHS: u32 = 100_000;
    pub const MAX_LAYERS: usize = 8;
    pub const MAX_LAYER_SIZE: u32 = 4096;
    pub const MAX_BATCH_SIZE: u32 = 65_536;
    pub const MAX_LEARNING_RATE: f64 = 10.0;
    pub const MAX_TREES: u32 = 10_000;
    pub const MAX_TREE_DEPTH: u32 = 16;
    pub const MAX_TIME_LIMIT_S: f64 = 7.0 * 24.0 * 3600.0;
    /// Longest sleep of a `noop` task (10 minutes).
    pub const MAX_SLEEP_MS: u64 = 600_000;
}

/// One training, fully described. Every field has a default, so `{}` is a valid request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSpec {
    pub model_type: ModelType,
    /// Passes over the training rows (burn models).
    pub epochs: u32,
    /// Adam's learning rate (burn models).
    pub learning_rate: f64,
    /// Sizes of the MLP's hidden layers, input side first.
    pub hidden_sizes: Vec<u32>,
    pub batch_size: u32,
    /// Seeds the split, the shuffles and the weights: the same seed gives the same metrics.
    pub seed: u64,
    /// Share of rows held out for the test metrics.
    pub test_fraction: f64,
    /// A built-in data set name; callers that hold an uploaded data set pass it to `train`.
    pub dataset: String,
    pub gbdt: GbdtParams,
    /// Wall-clock limit; the training stops with `DeadlineExceeded` between batches after it.
    pub time_limit_s: Option<f64>,
    /// Share of the training rows held out (never the test rows) for validation metrics
    /// (`val_loss`, `val_r2`, `val_rmse`), which sweeps judge trials by. None: no validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_fraction: Option<f64>,
    /// How long a `noop` task sleeps, in milliseconds (0 for the others).
    #[serde(skip_serializing_if = "is_zero")]
    pub sleep_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            model_type: ModelType::Mlp,
            epochs: 100,
            learning_rate: 0.001,
            hidden_sizes: vec![64, 32, 16],
            batch_size: 64,
            seed: 42,
            test_fraction: 0.2,
            dataset: "friedman1".into(),
            gbdt: GbdtParams::default(),
            time_limit_s: None,
            validation_fraction: None,
            sleep_ms: 0,
        }
    }
}

impl TrainSpec {
    /// A default spec for one model type.
    pub fn new(model_type: ModelType) -> Self {
        TrainSpec {
            model_type,
            ..TrainSpec::default()
        }
    }

    /// Whether `other` trains the same models on the same built-in data as this spec, and so
    /// takes about as long: only the seed, the learning rates and the time limit may differ.
    pub fn same_work(&self, other: &TrainSpec) -> bool {
        let work = |s: &TrainSpec| TrainSpec {
            seed: 0,
            learning_rate: 0.0,
            time_limit_s: None,
            gbdt: GbdtParams {
                learning_rate: 0.0,
                ..s.gbdt.clone()
            },
            ..s.clone()
        };
        work(self) == work(other)
    }

    /// Checks every rule and lists every broken one in a single error.
    pub fn validate(&self) -> Result<(), TrainError> {
        use limits::*;
        let mut problems = Vec::new();
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            problems.push(format!(
                "epochs must be between 1 and {MAX_EPOCHS}, got {}",
                self.epochs
            ));
        }
        check_rate(&mut problems, "learning_rate", self.learning_rate);
        if self.hidden_sizes.len() > MAX_LAYERS {
            problems.push(format!(
                "hidden_sizes may have at most {MAX_LAYERS} layers, got {}",
                self.hidden_sizes.len()
            ));
        }
        for (i, &size) in self.hidden_sizes.iter().enumerate() {
            if size == 0 || size > MAX_LAYER_SIZE {
                problems.push(format!(
                    "hidden_sizes[{i}] must be between 1 and {MAX_LAYER_SIZE}, got {size}"
                ));
            }
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            problems.push(format!(
                "batch_size must be between 1 and {MAX_BATCH_SIZE}, got {}",
                self.batch_size
            ));
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            problems.push(format!(
                "test_fraction must be above 0 and below 1, got {}",
                self.test_fraction
            ));
        }
        if self.dataset.trim().is_empty() {
            problems.push("dataset must not be empty".into());
        }
        let trees = &self.gbdt;
        if trees.n_trees == 0 || trees.n_trees > MAX_TREES {
            problems.push(format!(
                "gbdt.n_trees must be between 1 and {MAX_TREES}, got {}",
                trees.n_trees
            ));
        }
        check_rate(&mut problems, "gbdt.learning_rate", trees.learning_rate);
        if trees.max_depth == 0 || trees.max_depth > MAX_TREE_DEPTH {
            problems.push(format!(
                "gbdt.max_depth must be between 1 and {MAX_TREE_DEPTH}, got {}",
                trees.max_depth
            ));
        }
        if trees.min_samples_leaf == 0 {
            problems.push("gbdt.min_samples_leaf must be at least 1, got 0".into());
        }
        if let Some(limit) = self.time_limit_s
            && !(limit.is_finite() && limit > 0.0 && limit <= MAX_TIME_LIMIT_S)
        {
            problems.push(format!(
                "time_limit_s must be above 0 and at most {MAX_TIME_LIMIT_S}, got {limit}"
            ));
        }
        if let Some(fraction) = self.validation_fraction
            && !(fraction > 0.0 && fraction < 1.0)
        {
            problems.push(format!(
                "validation_fraction must be above 0 and below 1, got {fraction}"
            ));
        }
        if self.sleep_ms > MAX_SLEEP_MS {
            problems.push(format!(
                "sleep_ms must be at most {MAX_SLEEP_MS}, got {}",
                self.sleep_ms
            ));
        }
        if self.sleep_ms > 0 && self.model_type != ModelType::Noop {
            problems.push(format!(
                "sleep_ms applies to the noop model type only, not {}",
                self.model_type
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TrainError::InvalidSpec { problems })
        }
    }
}

fn check_rate(problems: &mut Vec<String>, name: &str, rate: f64) {
    if !(rate.is_finite() && rate > 0.0 && rate <= limits::MAX_LEARNING_RATE) {
        problems.push(format!(
            "{name} must be above 0 and at most {}, got {rate}",
            limits::MAX_LEARNING_RATE
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(spec: &TrainSpec) -> Vec<String> {
        match spec.validate() {
            Err(TrainError::InvalidSpec { problems }) => problems,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        for model in ModelType::NAMES {
            TrainSpec::new(model.parse().unwrap()).validate().unwrap();
        }
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let spec = TrainSpec {
            epochs: 0,
            learning_rate: f64::NAN,
            hidden_sizes: vec![0, 5000, 1, 1, 1, 1, 1, 1, 1],
            batch_size: 0,
            test_fraction: 1.0,
            dataset: " ".into(),
            gbdt: GbdtParams {
                n_trees: 0,
                learning_rate: 0.0,
                max_depth: 99,
                min_samples_leaf: 0,
            },
            time_limit_s: Some(f64::INFINITY),
            ..TrainSpec::default()
        };
        let found = problems(&spec);
        for needle in [
            "epochs",
            "learning_rate must",
            "at most 8 layers",
            "hidden_sizes[0]",
            "hidden_sizes[1]",
            "batch_size",
            "test_fraction",
            "dataset",
            "gbdt.n_trees",
            "gbdt.learning_rate",
            "gbdt.max_depth",
            "gbdt.min_samples_leaf",
            "time_limit_s",
        ] {
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "no problem mentions {needle:?}: {found:?}"
            );
        }
        assert_eq!(found.len(), 13, "{found:?}");
    }

    #[test]
    fn bounds_are_inclusive_at_the_top() {
        let spec = TrainSpec {
            epochs: limits::MAX_EPOCHS,
            learning_rate: 10.0,
            hidden_sizes: vec![4096; 8],
            ..TrainSpec::default()
        };
        spec.validate().unwrap();
        let spec = TrainSpec {
            epochs: limits::MAX_EPOCHS + 1,
            learning_rate: 10.5,
            ..TrainSpec::default()
        };
        assert_eq!(problems(&spec).len(), 2);
    }

    #[test]
    fn specs_deserialize_with_defaults_and_refuse_unknown_fields() {
        let spec: TrainSpec =
            serde_json::from_str(r#"{"model_type":"gbdt","epochs":5,"gbdt":{"n_trees":7}}"#)
                .unwrap();
        assert_eq!(spec.model_type, ModelType::Gbdt);
        assert_eq!(spec.epochs, 5);
        assert_eq!(spec.gbdt.n_trees, 7);
        assert_eq!(spec.batch_size, 64);
        let err = serde_json::from_str::<TrainSpec>(r#"{"epoch":5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `epoch`"), "{err}");
    }

    #[test]
    fn same_work_ignores_only_seed_learning_rates_and_time_limit() {
        let base = TrainSpec::new(ModelType::Linear);
        let mut other = base.clone();
        other.seed = 7;
        other.learning_rate = 0.5;
        other.gbdt.learning_rate = 0.3;
        other.time_limit_s = Some(10.0);
        assert!(base.same_work(&other));
        let changes: [fn(&mut TrainSpec); 6] = [
            |s| s.epochs += 1,
            |s| s.batch_size = 32,
            |s| s.hidden_sizes = vec![8],
            |s| s.dataset = "other".into(),
            |s| s.model_type = ModelType::Mlp,
            |s| s.gbdt.n_trees = 5,
        ];
        for change in changes {
            let mut other = base.clone();
            change(&mut other);
            assert!(!base.same_work(&other), "{other:?}");
        }
    }

    #[test]
    fn model_types_parse() {
        assert_eq!("all".parse(), Ok(ModelType::All));
        let err = "resnet".parse::<ModelType>().unwrap_err();
        assert!(err.contains("mlp, linear, gbdt, all"), "{err}");
        // The old service's names.
        assert_eq!("xgboost".parse(), Ok(ModelType::Gbdt));
        assert_eq!(
            ModelType::parse_requested("tensorflow"),
            Ok((ModelType::Mlp, Some("tensorflow")))
        );
        assert_eq!(
            ModelType::parse_requested("mlp"),
            Ok((ModelType::Mlp, None))
        );
        assert_eq!(ModelType::All.members().len(), 3);
    }
}
