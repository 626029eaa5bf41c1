//! The model registry: the [`Registry`] role and its records. A registered model is a name
//! with numbered versions (1, 2, 3, ...), each a copy of one finished task's model artifact
//! and what made it (spec, data set, metrics), kept until it is deleted: it never expires with
//! the task. Aliases (`production`, `staging`, any name) point at one version each.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::training::{ModelType, TrainSpec};

/// One version of a registered model: what it was trained from, how it scored, and where it
/// came from. Its artifact is kept beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Numbered from 1 within its name, never reused (0 before the store numbered it).
    #[serde(default)]
    pub version: u32,
    /// The task whose model this is.
    pub task_id: Uuid,
    pub model_type: ModelType,
    /// The training spec (its data set named as the task named it).
    pub spec: TrainSpec,
    /// The uploaded data set it trained on; none for a built-in one (`spec.dataset`).
    pub dataset_id: Option<Uuid>,
    /// SHA-256 of the data set's CSV (hex), for an uploaded data set.
    pub dataset_sha256: Option<String>,
    /// The task's metrics (`result.metrics`).
    pub metrics: serde_json::Value,
    /// The model that answers predictions (for `all`, the best one).
    pub best_model: Option<String>,
    /// When it was registered (Unix seconds, the store's clock).
    pub registered_at: f64,
    /// Bytes of its artifact.
    pub bytes: u64,
}

/// A registered model: its versions (oldest first) and aliases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    pub versions: Vec<ModelVersion>,
    /// Alias -> version.
    pub aliases: BTreeMap<String, u32>,
}

impl RegisteredModel {
    /// The newest version, if any is left.
    pub fn latest(&self) -> Option<&ModelVersion> {
        self.versions.iter().max_by_key(|v| v.version)
    }

    pub fn version(&self, version: u32) -> Option<&ModelVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The aliases that point at `version`.
    pub fn aliases_of(&self, version: u32) -> Vec<&str> {
        self.aliases
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|(a, _)| a.as_str())
            .collect()
    }
}

/// What `set_alias` should find the alias pointing at before it moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasExpect {
    /// Whatever it points at, or nothing.
    Any,
    /// Exactly this (none: the alias is not set): a compare-and-set, for promotions.
    Current(Option<u32>),
}

/// What `set_alias` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasSet {
    /// It points at the version now; it pointed at `previous` before.
    Set {
        previous: Option<u32>,
    },
    NoModel,
    NoVersion,
    /// It pointed at something else than expected (`AliasExpect::Current`): left as it was.
    Moved {
        current: Option<u32>,
    },
}

/// What `delete_model_version` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionDeleted {
    Deleted,
    NoModel,
    NoVersion,
    /// Aliases point at it: it is kept.
    Aliased(Vec<String>),
}

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    /// Higher is better (`test_r2`).
    Max,
    /// Lower is better (`test_rmse`).
    Min,
}

/// What to do with a task's model once it succeeds (a schedule's `register`, a sweep's
/// later): register it under `name`, and point `promote_alias` at it when it beats, on
/// `metric`, the version the alias points at (or when the alias is not set yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_alias: Option<String>,
    /// A metric of `result.metrics` (`test_r2`), or `MODEL.METRIC` for `all`
    /// (`gbdt.test_r2`); plain names of an `all` task read its best model's. Default
    /// `test_r2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Default: `min` for metrics whose name has `rmse`, `loss` or `duration`, else `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MetricMode>,
}

/// The metric a promotion compares when none is named.
pub const DEFAULT_METRIC: &str = "test_r2";

impl RegisterRule {
    pub fn metric(&self) -> &str {
        self.metric.as_deref().unwrap_or(DEFAULT_METRIC)
    }

    pub fn mode(&self) -> MetricMode {
        self.mode.unwrap_or_else(|| {
            let m = self.metric();
            if ["rmse", "loss", "duration"].iter().any(|w| m.contains(w)) {
                MetricMode::Min
            } else {
                MetricMode::Max
            }
        })
    }

    /// Every problem with the rule, each named.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = name_problem("register.name", &self.name)
            .into_iter()
            .collect();
        if let Some(alias) = &self.promote_alias {
            problems.extend(name_problem("register.promote_alias", alias));
        }
        if self.metric().is_empty() || self.metric().len() > MAX_MODEL_NAME {
            problems.push("register.metric must be 1 to 64 characters".into());
        }
        problems
    }

    /// Whether a version with metrics `new` should take the alias from one with `old`
    /// (none: the alias points nowhere). A new version without the metric never does; an
    /// old one without it always loses.
    pub fn beats(&self, new: &serde_json::Value, old: Option<&serde_json::Value>) -> bool {
        let Some(new) = metric_value(new, self.metric()) else {
            return false;
        };
        let Some(old) = old.and_then(|old| metric_value(old, self.metric())) else {
            return true;
        };
        match self.mode() {
            MetricMode::Max => new > old,
            MetricMode::Min => new < old,
        }
    }
}

/// Metric `name` of a task's metrics: `test_r2`, or `MODEL.test_r2`; for an `all` task, a
/// plain name reads its best model's.
pub fn metric_value(metrics: &serde_json::Value, name: &str) -> Option<f64> {
    if let Some(v) = metrics.get(name).and_then(|v| v.as_f64()) {
        return Some(v);
    }
    if let Some((model, metric)) = name.split_once('.') {
        return metrics.get(model)?.get(metric)?.as_f64();
    }
    let best = metrics.get("best_model")?.as_str()?;
    metrics.get(best)?.get(name)?.as_f64()
}

/// Longest model name or alias.
pub const MAX_MODEL_NAME: usize = 64;

/// Why `name` cannot name a model or an alias (`what`: "model name", "alias"): 1 to 64 of
/// `[A-Za-z0-9._-]`, and not a UUID (a UUID in `/models/{id}` is a task's id).
pub fn name_problem(what: &str, name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_MODEL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Some(format!(
            "{what} must be 1 to {MAX_MODEL_NAME} letters, digits, '.', '_' or '-', got {name:?}"
        ));
    }
    if Uuid::parse_str(name).is_ok() {
        return Some(format!(
            "{what} {name:?} is a UUID, which names a task in /models/{{id}}: choose another"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "{what} {name:?} is all digits, which reads as a version number: choose another"
        ));
    }
    None
}

/// The model registry. Every method is atomic.
pub trait Registry: Send + Sync + 'static {
    /// Adds `version` (its `version` field ignored) under `name` as the name's next version,
    /// with its artifact; creates the name if it is new. Returns the version as stored.
    fn register_model(
        &self,
        name: &str,
        version: &ModelVersion,
        artifact: &[u8],
    ) -> impl Future<Output = Result<ModelVersion, StoreError>> + Send;
    /// Every registered model, by name.
    fn registered_models(
        &self,
    ) -> impl Future<Output = Result<Vec<RegisteredModel>, StoreError>> + Send;
    fn registered_model(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<RegisteredModel>, StoreError>> + Send;
    /// Points `alias` of model `name` at `version`, if `expect` holds.
    fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        expect: AliasExpect,
    ) -> impl Future<Output = Result<AliasSet, StoreError>> + Send;
    /// Removes a version and its artifact, unless an alias points at it.
    fn delete_model_version(
        &self,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<VersionDeleted, StoreError>> + Send;
    /// The artifact of a version.
    fn version_artifact(
        &self,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn promotions_compare_the_metric_the_right_way() {
        let rule = |metric: Option<&str>, mode| RegisterRule {
            name: "m".into(),
            promote_alias: Some("production".into()),
            metric: metric.map(str::to_string),
            mode,
        };
        let (good, bad) = (
            json!({"test_r2": 0.9, "test_rmse": 1.0}),
            json!({"test_r2": 0.5, "test_rmse": 2.0}),
        );
        let r2 = rule(None, None);
        assert_eq!(r2.mode(), MetricMode::Max);
        assert!(r2.beats(&good, Some(&bad)));
        assert!(!r2.beats(&bad, Some(&good)));
        assert!(!r2.beats(&good, Some(&good)), "a tie keeps the alias");
        assert!(r2.beats(&bad, None), "an unset alias is taken");
        assert!(!r2.beats(&json!({}), None), "no metric, no promotion");
        let rmse = rule(Some("test_rmse"), None);
        assert_eq!(rmse.mode(), MetricMode::Min);
        assert!(rmse.beats(&good, Some(&bad)));
        assert!(rule(Some("test_rmse"), Some(MetricMode::Max)).beats(&bad, Some(&good)));
        let all = json!({"best_model": "gbdt", "gbdt": {"test_r2": 0.8}, "mlp": {"test_r2": 0.7}});
        assert_eq!(metric_value(&all, "test_r2"), Some(0.8));
        assert_eq!(metric_value(&all, "mlp.test_r2"), Some(0.7));
        assert_eq!(metric_value(&all, "nope"), None);
    }

    #[test]
    fn names_are_short_plain_and_not_ids_or_numbers() {
        for good in ["prices", "house-prices_v2.1", "A", &"x".repeat(64)] {
            assert_eq!(name_problem("model name", good), None, "{good}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "é",
            &"x".repeat(65),
            "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d",
            "12",
        ] {
            assert!(name_problem("model name", bad).is_some(), "{bad:?}");
        }
    }
}
