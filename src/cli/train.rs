//! `trainyard train`: one training in this process, with a progress bar on a terminal, then
//! its metrics as a table or JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::api::TrainRequest;
use crate::client::{HyperArgs, TreeArgs};
use crate::training::{
    self, CancelToken, Dataset, DeviceSpec, FRIEDMAN1_DEFAULT_ROWS, ModelType, TrainSpec,
};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model type: mlp, linear, gbdt or all (or the old service's tensorflow, pytorch,
    /// xgboost).
    #[arg(value_parser = crate::client::model_type_parser())]
    pub model: ModelType,
    /// A built-in data set: friedman1 (default), diabetes or winequality.
    #[arg(long, conflicts_with = "csv")]
    pub dataset: Option<String>,
    /// A CSV file with a header line; needs --target.
    #[arg(long, requires = "target")]
    pub csv: Option<PathBuf>,
    /// The CSV column to predict.
    #[arg(long, requires = "csv")]
    pub target: Option<String>,
    /// Rows of the synthetic friedman1 data set.
    #[arg(long, default_value_t = FRIEDMAN1_DEFAULT_ROWS)]
    pub rows: usize,
    #[command(flatten)]
    pub hyper: HyperArgs,
    #[command(flatten)]
    pub trees: TreeArgs,
    /// Stop with an error after this many seconds.
    #[arg(long)]
    pub time_limit_s: Option<f64>,
    /// cpu or gpu:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Write the trained model's bytes to this file.
    #[arg(long)]
    pub save_model: Option<PathBuf>,
}

impl TrainArgs {
    fn spec(&self) -> TrainSpec {
        let request = TrainRequest {
            gbdt: self.trees.gbdt(),
            time_limit_s: self.time_limit_s,
            ..self.hyper.request()
        };
        let spec = request.spec(self.model);
        TrainSpec {
            dataset: self.dataset.clone().unwrap_or(spec.dataset.clone()),
            ..spec
        }
    }

    fn dataset(&self, spec: &TrainSpec) -> anyhow::Result<Dataset> {
        if let (Some(path), Some(target)) = (&self.csv, &self.target) {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path
                .file_stem()
                .map_or("csv".into(), |s| s.to_string_lossy());
            return Ok(Dataset::from_csv(&bytes, &name, target)?);
        }
        if spec.dataset == "friedman1" {
            return Ok(Dataset::friedman1(self.rows, spec.seed));
        }
        Ok(Dataset::builtin(&spec.dataset, spec.seed)?)
    }
}

/// Trains as `args` say; `json` (the global `--json`) prints the result as one JSON object.
pub fn train(args: &TrainArgs, json: bool) -> anyhow::Result<()> {
    let spec = args.spec();
    spec.validate()?;
    let dataset = args.dataset(&spec)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}").expect("template is valid"),
    );
    let mut on_progress = |p: &training::Progress| {
        bar.set_length(p.total);
        bar.set_position(p.current);
        match p.loss {
            Some(loss) => bar.set_message(format!("{} loss {loss:.4}", p.message)),
            None => bar.set_message(p.message.clone()),
        }
    };
    let outcome = training::train(
        &spec,
        &dataset,
        &args.device,
        &mut on_progress,
        &CancelToken::new(),
    );
    bar.finish_and_clear();
    let outcome = outcome?;
    if let Some(path) = &args.save_model {
        std::fs::write(path, &outcome.model_bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let peak_rss_bytes = peak_rss_bytes();
    if json {
        let out = serde_json::json!({
            "success": true,
            "message": outcome.message(),
            "model_type": outcome.model_type,
            "best_model": outcome.best,
            "dataset": {"name": dataset.name, "rows": dataset.n_rows(), "features": dataset.n_features()},
            "device": args.device.to_string(),
            "metrics": outcome.metrics_json(),
            "peak_rss_bytes": peak_rss_bytes,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "data set {} ({} rows, {} features), device {}",
        dataset.name,
        dataset.n_rows(),
        dataset.n_features(),
        args.device
    );
    println!(
        "{:<8} {:>9} {:>9} {:>10} {:>10} {:>11} {:>9} {:>13}",
        "model",
        "train_r2",
        "test_r2",
        "train_rmse",
        "test_rmse",
        "final_loss",
        "seconds",
        "samples/s"
    );
    for r in &outcome.reports {
        let m = &r.metrics;
        println!(
            "{:<8} {:>9.4} {:>9.4} {:>10.4} {:>10.4} {:>11.4} {:>9.3} {:>13.0}",
            r.model_type.as_str(),
            m.train_r2,
            m.test_r2,
            m.train_rmse,
            m.test_rmse,
            m.final_loss,
            m.duration_s,
            m.samples_per_s
        );
    }
    if outcome.reports.len() > 1 {
        println!("best model: {}", outcome.best);
    }
    if let Some(bytes) = peak_rss_bytes {
        println!("peak resident memory: {:.1} MB", bytes as f64 / 1e6);
    }
    Ok(())
}

/// The process's peak resident set size (Linux `VmHWM`), if the platform tells.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
