//! The `noop` model type: no data, no model, only an optional sleep that honours cancel and
//! the time limit. It measures the queue itself (claim, finish, events), as Celery's no-op
//! tasks measure Celery's.

use std::time::{Duration, Instant};

use super::artifact::TrainedModel;
use super::{CancelToken, Metrics, ModelReport, ModelType, TrainError, TrainOutcome, TrainSpec};

/// Longest a sleeping no-op goes without looking at its cancel token and time limit.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Sleeps `spec.sleep_ms` (checking `cancel` and the spec's time limit every
/// [`CHECK_EVERY`]) and ends with an empty outcome: zero metrics but the duration, no model
/// (`model_bytes` is empty, which the stores keep as no model at all).
pub fn run(spec: &TrainSpec, cancel: &CancelToken) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    let wake = started + Duration::from_millis(spec.sleep_ms);
    let deadline = spec
        .time_limit_s
        .map(|s| (started + Duration::from_secs_f64(s), s));
    loop {
        if cancel.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        let now = Instant::now();
        if let Some((at, limit_s)) = deadline
            && now >= at
        {
            return Err(TrainError::DeadlineExceeded { limit_s });
        }
        if now >= wake {
            break;
        }
        let mut until = wake.min(now + CHECK_EVERY);
        if let Some((at, _)) = deadline {
            until = until.min(at);
        }
        std::thread::sleep(until - now);
    }
    let duration_s = started.elapsed().as_secs_f64();
    let metrics = Metrics {
        train_r2: 0.0,
        test_r2: 0.0,
        train_rmse: 0.0,
        test_rmse: 0.0,
        final_loss: 0.0,
        duration_s,
        samples_per_s: 0.0,
        train_rows: 0,
        test_rows: 0,
        iterations: 0,
        val_loss: None,
        val_r2: None,
        val_rmse: None,
    };
    Ok(TrainOutcome {
        stopped_at: None,
        model_type: ModelType::Noop,
        reports: vec![ModelReport {
            model_type: ModelType::Noop,
            metrics,
        }],
        best: ModelType::Noop,
        model: TrainedModel {
            feature_names: Vec::new(),
            target_name: String::new(),
            models: Vec::new(),
            chosen: 0,
        },
        model_bytes: Vec::new(),
        duration_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(sleep_ms: u64, time_limit_s: Option<f64>) -> TrainSpec {
        TrainSpec {
            sleep_ms,
            time_limit_s,
            ..TrainSpec::new(ModelType::Noop)
        }
    }

    #[test]
    fn ends_at_once_with_no_model() {
        let outcome = run(&noop(0, None), &CancelToken::new()).unwrap();
        assert!(outcome.model_bytes.is_empty());
        assert_eq!(outcome.best, ModelType::Noop);
        assert_eq!(outcome.message(), "Noop model trained successfully");
        assert!(outcome.duration_s < 0.1);
    }

    #[test]
    fn sleeps_as_asked() {
        let outcome = run(&noop(60, None), &CancelToken::new()).unwrap();
        assert!(outcome.duration_s >= 0.06, "{}", outcome.duration_s);
    }

    #[test]
    fn a_cancel_stops_the_sleep() {
        let cancel = CancelToken::new();
        let later = cancel.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            later.cancel();
        });
        let started = Instant::now();
        let ended = run(&noop(600_000, None), &cancel);
        canceller.join().unwrap();
        assert!(matches!(ended, Err(TrainError::Cancelled)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_time_limit_stops_the_sleep() {
        let started = Instant::now();
        let ended = run(&noop(600_000, Some(0.1)), &CancelToken::new());
        assert!(matches!(ended, Err(TrainError::DeadlineExceeded { .. })));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
