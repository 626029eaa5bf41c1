//! Regression metrics, computed in f64 on the target's original scale.

use serde::{Deserialize, Serialize};

/// What one trained model scored, and how fast it trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub train_r2: f64,
    pub test_r2: f64,
    pub train_rmse: f64,
    pub test_rmse: f64,
    /// Mean squared error of the last epoch (burn models) or of the finished ensemble on the
    /// training rows (trees), on the target's original scale.
    pub final_loss: f64,
    /// Wall time of the whole training of this model, data preparation and scoring included.
    pub duration_s: f64,
    /// Training rows processed per second while fitting: rows x epochs (or x trees) / fit time.
    pub samples_per_s: f64,
    pub train_rows: u64,
    pub test_rows: u64,
    /// Epochs for burn models, trees for gradient boosting.
    pub iterations: u32,
    /// On the validation rows (a spec with `validation_fraction`): mean squared error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// On the validation rows: R2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_r2: Option<f64>,
    /// On the validation rows: root mean squared error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_rmse: Option<f64>,
}

/// A metric on the validation rows, which sweeps rank trials by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValMetric {
    ValLoss,
    ValR2,
    ValRmse,
}

impl ValMetric {
    pub const NAMES: [&'static str; 3] = ["val_loss", "val_r2", "val_rmse"];

    pub fn as_str(self) -> &'static str {
        match self {
            ValMetric::ValLoss => "val_loss",
            ValMetric::ValR2 => "val_r2",
            ValMetric::ValRmse => "val_rmse",
        }
    }

    pub fn parse(name: &str) -> Option<ValMetric> {
        match name {
            "val_loss" => Some(ValMetric::ValLoss),
            "val_r2" => Some(ValMetric::ValR2),
            "val_rmse" => Some(ValMetric::ValRmse),
            _ => None,
        }
    }

    /// Whether a larger value is better (R2) or a smaller one (the errors).
    pub fn higher_is_better(self) -> bool {
        self == ValMetric::ValR2
    }

    /// The metric of `predicted` against `actual`.
    pub fn of(self, actual: &[f32], predicted: &[f32]) -> f64 {
        match self {
            ValMetric::ValLoss => mse(actual, predicted),
            ValMetric::ValR2 => r2(actual, predicted),
            ValMetric::ValRmse => rmse(actual, predicted),
        }
    }

    /// This metric among `metrics`, if they have it.
    pub fn read(self, metrics: &Metrics) -> Option<f64> {
        match self {
            ValMetric::ValLoss => metrics.val_loss,
            ValMetric::ValR2 => metrics.val_r2,
            ValMetric::ValRmse => metrics.val_rmse,
        }
    }
}

/// Coefficient of determination: 1 - SS_res / SS_tot. A constant target gives 0 when the
/// predictions are exact, as scikit-learn does not (it gives 1.0 or -inf); that case is only
/// reachable with a degenerate data set.
pub fn r2(actual: &[f32], predicted: &[f32]) -> f64 {
    assert_eq!(actual.len(), predicted.len(), "r2 of unequal lengths");
    if actual.is_empty() {
        return 0.0;
    }
    let mean = actual.iter().map(|&y| y as f64).sum::<f64>() / actual.len() as f64;
    let ss_tot: f64 = actual.iter().map(|&y| (y as f64 - mean).powi(2)).sum();
    let ss_res = sum_squared_error(actual, predicted);
    if ss_tot == 0.0 {
        return 0.0;
    }
    1.0 - ss_res / ss_tot
}

/// Mean squared error.
pub fn mse(actual: &[f32], predicted: &[f32]) -> f64 {
    assert_eq!(actual.len(), predicted.len(), "mse of unequal lengths");
    if actual.is_empty() {
        return 0.0;
    }
    sum_squared_error(actual, predicted) / actual.len() as f64
}

/// Root mean squared error.
pub fn rmse(actual: &[f32], predicted: &[f32]) -> f64 {
    mse(actual, predicted).sqrt()
}

fn sum_squared_error(actual: &[f32], predicted: &[f32]) -> f64 {
    actual
        .iter()
        .zip(predicted)
        .map(|(&y, &p)| (y as f64 - p as f64).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // actual 1,2,3,4 (mean 2.5, SS_tot = 5); predicted 1,2,3,5 (SS_res = 1).
        let y = [1.0, 2.0, 3.0, 4.0];
        let p = [1.0, 2.0, 3.0, 5.0];
        assert!(close(mse(&y, &p), 0.25));
        assert!(close(rmse(&y, &p), 0.5));
        assert!(close(r2(&y, &p), 0.8));
        // Perfect predictions; predicting the mean gives 0.
        assert!(close(r2(&y, &y), 1.0));
        assert!(close(r2(&y, &[2.5; 4]), 0.0));
        // Worse than the mean is negative: SS_res = 2.25 + 9 + 9 + 9 = 29.25 -> 1 - 29.25/5.
        assert!(close(r2(&y, &[-0.5, 5.0, 0.0, 7.0]), 1.0 - 29.25 / 5.0));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(r2(&[], &[]), 0.0);
        assert_eq!(rmse(&[], &[]), 0.0);
        assert_eq!(r2(&[3.0, 3.0], &[3.0, 3.0]), 0.0);
    }
}
