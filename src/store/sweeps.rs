//! Hyperparameter sweeps as the store keeps them: the [`Sweeps`] role, the sweep record, its
//! rung results, and the one early-stopping decision (ASHA's, [`asha_go_on`]) both backends
//! make.
//!
//! A sweep's record is changed by the leader only, each change a compare-and-set on its
//! `version`; its rung results are written by the trainers of its trials, each (trial, rung)
//! decided once: a retried attempt that reaches a rung again is told the decision made the
//! first time. Every change logs an event in the sweep's own log, in the same atomic step.

use std::future::Future;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RegisterRule, StoreError, TaskRecord};
use crate::training::{ModelType, ValMetric};

/// How the trials' parameters are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Each parameter drawn from its distribution, seeded.
    Random,
    /// Every combination of the parameters' values, once.
    Grid,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Grid => "grid",
        }
    }
}

/// Whether a lower metric is better or a higher one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Min,
    Max,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }
}

/// Asynchronous successive halving: a trial is judged after `min_resource`,
/// `min_resource * reduction_factor`, ... steps (epochs, or trees) below `max_resource`, and
/// stopped unless it is in the top `1 / reduction_factor` of the trials judged there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asha {
    pub min_resource: u64,
    pub max_resource: u64,
    pub reduction_factor: u64,
}

impl Asha {
    /// The steps a trial is judged at, ascending.
    pub fn rungs(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut r = self.min_resource.max(1);
        while r < self.max_resource {
            out.push(r);
            r = r.saturating_mul(self.reduction_factor.max(2));
        }
        out
    }
}

/// What a rung decision needs besides the values: the rule of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RungRule {
    pub reduction_factor: u64,
    pub mode: Mode,
}

/// ASHA's decision for a trial that reached a rung with `value`, the rung having `recorded`
/// the values of the trials judged there before it: go on unless the value is worse than the
/// `1 - 1 / reduction_factor` quantile of `recorded` (linear interpolation, as numpy's
/// percentile and Ray Tune's ASHA). The first trial at a rung goes on.
pub fn asha_go_on(recorded: &[f64], value: f64, rule: RungRule) -> bool {
    let mut values: Vec<f64> = recorded.iter().copied().filter(|v| v.is_finite()).collect();
    if !value.is_finite() {
        return false;
    }
    if values.is_empty() {
        return true;
    }
    // In "higher is better" terms, as Ray Tune's scheduler computes it.
    let sign = match rule.mode {
        Mode::Max => 1.0,
        Mode::Min => -1.0,
    };
    for v in &mut values {
        *v *= sign;
    }
    values.sort_by(f64::total_cmp);
    let q = 1.0 - 1.0 / rule.reduction_factor.max(2) as f64;
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let cutoff = values[lo] + (values[hi] - values[lo]) * (pos - lo as f64);
    value * sign >= cutoff
}

/// Where a sweep is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SweepState {
    /// Trials are still to launch or to end.
    Running,
    /// Every trial ended.
    Success,
    /// Cancelled: the trials left were revoked.
    Revoked,
}

impl SweepState {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "RUNNING",
            SweepState::Success => "SUCCESS",
            SweepState::Revoked => "REVOKED",
        }
    }
}

/// Where a trial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TrialState {
    /// Not launched yet.
    Waiting,
    /// Its task is submitted and not ended.
    Running,
    /// Trained to its end.
    Success,
    /// Stopped early at a rung (its task is a SUCCESS with the model at that rung).
    Stopped,
    Failure,
    Revoked,
}

impl TrialState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Waiting => "WAITING",
            TrialState::Running => "RUNNING",
            TrialState::Success => "SUCCESS",
            TrialState::Stopped => "STOPPED",
            TrialState::Failure => "FAILURE",
            TrialState::Revoked => "REVOKED",
        }
    }

    pub fn is_ended(self) -> bool {
        !matches!(self, TrialState::Waiting | TrialState::Running)
    }
}

/// One configuration of a sweep, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub trial: u32,
    /// The parameters drawn for it, by name (`learning_rate`, `hidden_sizes`, ...).
    pub params: serde_json::Map<String, serde_json::Value>,
    pub state: TrialState,
    pub task_id: Option<Uuid>,
    /// Steps (epochs, or trees) it trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<u64>,
    /// The sweep's metric of its model when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<f64>,
    /// Its model's test R2 (for reports: never used to choose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_r2: Option<f64>,
}

/// A hyperparameter search, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub id: Uuid,
    pub name: String,
    pub model_type: ModelType,
    pub strategy: Strategy,
    pub metric: ValMetric,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asha: Option<Asha>,
    /// Most trials running at once.
    pub parallel: u32,
    pub seed: u64,
    /// The fixed part of each trial's request, as posted.
    pub request: serde_json::Value,
    /// The search space, as posted.
    pub space: serde_json::Value,
    /// The task every trial starts from (its parameters applied at launch).
    pub template: TaskRecord,
    pub trials: Vec<Trial>,
    pub state: SweepState,
    pub created_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    /// How long it is kept once ended (the cluster's `result_expires_s` when created).
    pub keep_s: f64,
    /// Unix seconds after which an ended sweep is forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<f64>,
    /// Set when a cancel is asked for; the leader revokes the trials left.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Where the best trial's model is registered once the sweep succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<RegisterRule>,
    /// What that registration did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<SweepRegistered>,
    /// One more at each change (`update_sweep` compares it).
    pub version: u64,
}

/// The registration of a sweep's best model: the version it became, whether the rule's alias
/// moved to it; or why it could not be registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRegistered {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default)]
    pub promoted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Sweep {
    /// The rule its rung decisions follow.
    pub fn rung_rule(&self) -> Option<RungRule> {
        self.asha.map(|a| RungRule {
            reduction_factor: a.reduction_factor,
            mode: self.mode,
        })
    }

    /// Whether `a` is a better value of its metric than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.mode {
            Mode::Min => a < b,
            Mode::Max => a > b,
        }
    }

    /// The trial with the best metric, if any has one.
    pub fn best(&self) -> Option<&Trial> {
        self.trials
            .iter()
            .filter(|t| t.metric.is_some_and(f64::is_finite))
            .fold(None, |best: Option<&Trial>, t| match best {
                Some(b) if !self.better(t.metric.unwrap(), b.metric.unwrap()) => Some(b),
                _ => Some(t),
            })
    }
}

/// A trial's task: which sweep and which trial, and how its rungs are judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepLink {
    pub id: Uuid,
    pub trial: u32,
    pub metric: ValMetric,
    /// The steps the trial is judged at (none without early stopping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rungs: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RungRule>,
}

/// A trial's value at a rung, and the decision made there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungResult {
    pub trial: u32,
    /// The step (epoch, or tree) of the rung.
    pub step: u64,
    pub value: f64,
    /// False: the trial was stopped there.
    pub go_on: bool,
}

/// What `create_sweep` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepCreated {
    Created,
    /// `max` sweeps are kept already.
    Full,
}

/// One entry of a sweep's event log: its number (from 1, in order) and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepEvent {
    pub seq: u64,
    pub data: String,
}

/// Sweeps: created by clients, advanced by the leader, judged at rungs by trainers.
pub trait Sweeps: Send + Sync + 'static {
    /// Stores a new sweep and logs `event`, unless `max` sweeps are kept.
    fn create_sweep(
        &self,
        sweep: &Sweep,
        max: u64,
        event: &str,
    ) -> impl Future<Output = Result<SweepCreated, StoreError>> + Send;
    fn get_sweep(&self, id: Uuid)
    -> impl Future<Output = Result<Option<Sweep>, StoreError>> + Send;
    /// Every sweep kept, oldest first.
    fn sweeps(&self) -> impl Future<Output = Result<Vec<Sweep>, StoreError>> + Send;
    /// The sweeps in state RUNNING, oldest first (what the leader steps, without reading the
    /// ended ones).
    fn running_sweeps(&self) -> impl Future<Output = Result<Vec<Sweep>, StoreError>> + Send;
    /// Writes `sweep` if the one stored has version `sweep.version - 1`, and logs `events`;
    /// false if it changed meanwhile (or is gone).
    fn update_sweep(
        &self,
        sweep: &Sweep,
        events: &[String],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Forgets a sweep, its rung results and its events; false if there was none.
    fn delete_sweep(&self, id: Uuid) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records `value` of `trial` at the rung of `step` and decides ([`asha_go_on`] over
    /// the values recorded there before) whether it goes on, once: a trial that reports a
    /// rung again (a retried attempt) gets the first decision back. Logs a `rung` event.
    fn report_rung(
        &self,
        id: Uuid,
        trial: u32,
        step: u64,
        value: f64,
        rule: RungRule,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Every rung result of a sweep.
    fn rungs(&self, id: Uuid) -> impl Future<Output = Result<Vec<RungResult>, StoreError>> + Send;
    /// The sweep's events after number `after`, at most `max`.
    fn sweep_events(
        &self,
        id: Uuid,
        after: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<SweepEvent>, StoreError>> + Send;
}

/// The JSON of a rung event.
pub fn rung_event(id: Uuid, result: &RungResult) -> String {
    serde_json::json!({
        "type": "rung",
        "sweep_id": id,
        "trial": result.trial,
        "step": result.step,
        "value": result.value,
        "decision": if result.go_on { "continue" } else { "stop" },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN3: RungRule = RungRule {
        reduction_factor: 3,
        mode: Mode::Min,
    };

    /// The names the API shows are the stored (serde) names.
    #[test]
    fn names_are_the_stored_names() {
        let stored = |v: serde_json::Value| v.as_str().unwrap().to_string();
        for s in [Strategy::Random, Strategy::Grid] {
            assert_eq!(stored(serde_json::json!(s)), s.as_str());
        }
        for m in [Mode::Min, Mode::Max] {
            assert_eq!(stored(serde_json::json!(m)), m.as_str());
        }
        for t in [
            TrialState::Waiting,
            TrialState::Running,
            TrialState::Success,
            TrialState::Stopped,
            TrialState::Failure,
            TrialState::Revoked,
        ] {
            assert_eq!(stored(serde_json::json!(t)), t.as_str());
        }
        for s in [
            SweepState::Running,
            SweepState::Success,
            SweepState::Revoked,
        ] {
            assert_eq!(stored(serde_json::json!(s)), s.as_str());
        }
    }

    #[test]
    fn rungs_grow_by_the_reduction_factor_below_the_maximum() {
        let asha = Asha {
            min_resource: 5,
            max_resource: 100,
            reduction_factor: 3,
        };
        assert_eq!(asha.rungs(), vec![5, 15, 45]);
        let one = Asha {
            min_resource: 1,
            max_resource: 9,
            reduction_factor: 3,
        };
        assert_eq!(one.rungs(), vec![1, 3]);
    }

    /// A hand-made set of results: the decisions Ray Tune's ASHA makes on them.
    #[test]
    fn asha_keeps_the_top_third_of_those_judged_before() {
        // The first at a rung goes on.
        assert!(asha_go_on(&[], 5.0, MIN3));
        // Against one value: the cutoff is that value.
        assert!(asha_go_on(&[2.0], 1.0, MIN3));
        assert!(asha_go_on(&[2.0], 2.0, MIN3));
        assert!(!asha_go_on(&[2.0], 2.5, MIN3));
        // Against 1, 2, 3, 4 (losses): the 2/3 quantile of -4..-1 is -2: a loss of 2 goes on.
        let recorded = [4.0, 1.0, 3.0, 2.0];
        assert!(asha_go_on(&recorded, 2.0, MIN3));
        assert!(asha_go_on(&recorded, 0.5, MIN3));
        assert!(!asha_go_on(&recorded, 2.1, MIN3));
        // Interpolated: 1, 2, 3 gives -3, -2, -1; position 4/3 is -1.667: 1.6 goes on, 1.7 not.
        assert!(asha_go_on(&[1.0, 2.0, 3.0], 1.6, MIN3));
        assert!(!asha_go_on(&[1.0, 2.0, 3.0], 1.7, MIN3));
        // Maximising R2 at reduction factor 2: the median of those before.
        let max2 = RungRule {
            reduction_factor: 2,
            mode: Mode::Max,
        };
        assert!(asha_go_on(&[0.5, 0.7, 0.9], 0.7, max2));
        assert!(!asha_go_on(&[0.5, 0.7, 0.9], 0.69, max2));
        // A value that is not a number stops; recorded ones that are not are left out.
        assert!(!asha_go_on(&[1.0], f64::NAN, MIN3));
        assert!(asha_go_on(&[f64::NAN], 9.0, MIN3));
    }

    #[test]
    fn the_best_trial_follows_the_mode() {
        let trial = |n: u32, metric: Option<f64>| Trial {
            trial: n,
            params: Default::default(),
            state: TrialState::Success,
            task_id: None,
            resource: None,
            metric,
            test_r2: None,
        };
        let mut sweep: Sweep = serde_json::from_value(serde_json::json!({
            "id": Uuid::nil(), "name": "s", "model_type": "mlp", "strategy": "random",
            "metric": "val_loss", "mode": "min", "parallel": 1, "seed": 1,
            "request": {}, "space": {},
            "template": TaskRecord::new(crate::training::TrainSpec::default(), None, 0, 0),
            "trials": [], "state": "RUNNING", "created_at": 0.0, "keep_s": 60.0, "version": 1
        }))
        .unwrap();
        sweep.trials = vec![trial(0, Some(3.0)), trial(1, None), trial(2, Some(1.0))];
        assert_eq!(sweep.best().unwrap().trial, 2);
        sweep.mode = Mode::Max;
        assert_eq!(sweep.best().unwrap().trial, 0);
    }
}
