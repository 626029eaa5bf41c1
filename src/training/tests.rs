//! Checkpoints and resume, end to end through `train_resumable`: a training resumed from any
//! mid checkpoint ends with the model and metrics of the uninterrupted one, value for value.

use std::time::Duration;

use super::*;

/// A small, quick spec for `model_type`.
fn small(model_type: ModelType) -> TrainSpec {
    TrainSpec {
        model_type,
        epochs: 6,
        hidden_sizes: vec![16, 8],
        batch_size: 32,
        learning_rate: 0.01,
        gbdt: GbdtParams {
            n_trees: 70,
            ..GbdtParams::default()
        },
        ..TrainSpec::default()
    }
}

/// A run of `spec` on `data` from `from`, saving a checkpoint at every step boundary:
/// the outcome, the checkpoints and the steps the progress reports named.
fn run(
    spec: &TrainSpec,
    data: &Dataset,
    from: Option<Checkpoint>,
) -> (TrainOutcome, Vec<Checkpoint>, Vec<u64>) {
    let mut saved = Vec::new();
    let mut steps = Vec::new();
    let mut sink = |c: Checkpoint| saved.push(c);
    let checkpointing = Checkpointing {
        from,
        every: Duration::ZERO,
        save_now: SaveNow::new(),
        sink: &mut sink,
    };
    let outcome = train_resumable(
        spec,
        data,
        &DeviceSpec::Cpu,
        &mut |p| steps.push(p.current),
        &CancelToken::new(),
        Some(checkpointing),
    )
    .unwrap();
    (outcome, saved, steps)
}

/// Every model's predictions for every row of `data`, as bits: equal for two models with the
/// same weights (their artifacts differ: burnpack names each parameter with a random id).
fn predictions(outcome: &TrainOutcome, data: &Dataset) -> Vec<Vec<u32>> {
    let x: Vec<f32> = (0..data.n_rows())
        .flat_map(|i| data.row(i).to_vec())
        .collect();
    outcome
        .model
        .models
        .iter()
        .map(|(_, p)| p.predict(&x).into_iter().map(f32::to_bits).collect())
        .collect()
}

/// The metrics but for the timings.
fn values(outcome: &TrainOutcome) -> Vec<(ModelType, [f64; 5], u32)> {
    outcome
        .reports
        .iter()
        .map(|r| {
            let m = &r.metrics;
            let v = [
                m.train_r2,
                m.test_r2,
                m.train_rmse,
                m.test_rmse,
                m.final_loss,
            ];
            (r.model_type, v, m.iterations)
        })
        .collect()
}

#[test]
fn a_fit_resumed_from_a_checkpoint_is_the_uninterrupted_fit() {
    let data = Dataset::friedman1(600, 3);
    for model_type in [
        ModelType::Mlp,
        ModelType::Linear,
        ModelType::Gbdt,
        ModelType::All,
    ] {
        let spec = small(model_type);
        let plain = train(
            &spec,
            &data,
            &DeviceSpec::Cpu,
            &mut |_| {},
            &CancelToken::new(),
        )
        .unwrap();
        let (whole, checkpoints, _) = run(&spec, &data, None);
        let expected = predictions(&plain, &data);
        assert!(
            predictions(&whole, &data) == expected,
            "{model_type}: checkpoints change nothing"
        );
        assert_eq!(values(&whole), values(&plain), "{model_type}");
        assert!(
            checkpoints.len() >= 2,
            "{model_type}: {} checkpoints",
            checkpoints.len()
        );
        // Every checkpoint, the first model's and (for `all`) the later ones'.
        for checkpoint in checkpoints {
            let step = checkpoint.step;
            let (resumed, _, steps) = run(&spec, &data, Some(checkpoint));
            assert!(
                predictions(&resumed, &data) == expected,
                "{model_type} resumed after step {step}: the same model"
            );
            assert_eq!(
                values(&resumed),
                values(&whole),
                "{model_type} after step {step}"
            );
            assert!(
                steps.first().is_some_and(|&s| s > step),
                "{model_type} resumed after step {step} ran only the steps after it: {steps:?}"
            );
        }
    }
}

#[test]
fn a_checkpoint_of_another_training_is_refused_before_any_step() {
    let data = Dataset::friedman1(600, 3);
    let (_, checkpoints, _) = run(&small(ModelType::Gbdt), &data, None);
    let trees = checkpoints[0].clone();
    let mut saw_step = false;
    let mut sink = |_| {};
    let refused = train_resumable(
        &small(ModelType::Mlp),
        &data,
        &DeviceSpec::Cpu,
        &mut |_| saw_step = true,
        &CancelToken::new(),
        Some(Checkpointing {
            from: Some(trees),
            every: Duration::ZERO,
            save_now: SaveNow::new(),
            sink: &mut sink,
        }),
    );
    assert!(
        matches!(refused, Err(TrainError::Checkpoint(_))),
        "{:?}",
        refused.err()
    );
    assert!(!saw_step);
    let garbage = Checkpoint {
        step: 3,
        bytes: b"TYCKPT01\xff\xff\xff".to_vec(),
    };
    let (outcome, _, _) = (|| {
        let mut sink = |_| {};
        let r = train_resumable(
            &small(ModelType::Mlp),
            &data,
            &DeviceSpec::Cpu,
            &mut |_| {},
            &CancelToken::new(),
            Some(Checkpointing {
                from: Some(garbage),
                every: Duration::ZERO,
                save_now: SaveNow::new(),
                sink: &mut sink,
            }),
        );
        (r, (), ())
    })();
    assert!(matches!(outcome, Err(TrainError::Checkpoint(_))));
}

#[test]
fn a_save_asked_for_comes_at_the_next_boundary() {
    let data = Dataset::friedman1(600, 3);
    let save_now = SaveNow::new();
    save_now.request();
    let mut saved = Vec::new();
    let mut sink = |c: Checkpoint| saved.push(c.step);
    train_resumable(
        &small(ModelType::Mlp),
        &data,
        &DeviceSpec::Cpu,
        &mut |_| {},
        &CancelToken::new(),
        Some(Checkpointing {
            from: None,
            every: Duration::from_secs(3600),
            save_now,
            sink: &mut sink,
        }),
    )
    .unwrap();
    assert_eq!(saved, vec![1], "one checkpoint, after the first epoch");
}
