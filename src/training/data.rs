//! Data sets: built-in ones (a seeded synthetic `friedman1`, and real data shipped inside
//! `linfa-datasets`), user CSV files, the seeded train/test split and standardisation.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::DataError;

/// Names accepted by [`Dataset::builtin`].
pub const BUILTIN_DATASETS: [&str; 3] = ["friedman1", "diabetes", "winequality"];

/// Rows of the built-in `friedman1` unless a caller asks for another size.
pub const FRIEDMAN1_DEFAULT_ROWS: usize = 20_000;

/// Fewest rows each side of a split may have.
pub const MIN_SPLIT_ROWS: usize = 1;

/// A table of numeric features and one numeric target, held row-major in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub feature_names: Vec<String>,
    pub target_name: String,
    features: Vec<f32>,
    targets: Vec<f32>,
}

impl Dataset {
    /// Builds a data set from row-major features; every value must be finite.
    pub fn new(
        name: impl Into<String>,
        feature_names: Vec<String>,
        target_name: impl Into<String>,
        features: Vec<f32>,
        targets: Vec<f32>,
    ) -> Result<Self, DataError> {
        if feature_names.is_empty() {
            return Err(DataError::NoFeatures);
        }
        if targets.is_empty() {
            return Err(DataError::NoRows);
        }
        if features.len() != targets.len() * feature_names.len() {
            return Err(DataError::Malformed(format!(
                "{} feature values do not fill {} rows of {} features",
                features.len(),
                targets.len(),
                feature_names.len()
            )));
        }
        let width = feature_names.len();
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(DataError::NotFinite {
                line: (i / width) as u64 + 2,
                column: feature_names[i % width].clone(),
                value: features[i].to_string(),
            });
        }
        let target_name = target_name.into();
        if let Some(i) = targets.iter().position(|v| !v.is_finite()) {
            return Err(DataError::NotFinite {
                line: i as u64 + 2,
                column: target_name,
                value: targets[i].to_string(),
            });
        }
        Ok(Dataset {
            name: name.into(),
            feature_names,
            target_name,
            features,
            targets,
        })
    }

    /// A built-in data set by name. `seed` drives the synthetic ones.
    pub fn builtin(name: &str, seed: u64) -> Result<Self, DataError> {
        match name {
            "friedman1" => Ok(Dataset::friedman1(FRIEDMAN1_DEFAULT_ROWS, seed)),
            "diabetes" => Ok(Dataset::diabetes()),
            "winequality" => Ok(Dataset::winequality()),
            _ => Err(DataError::UnknownDataset {
                name: name.into(),
                known: BUILTIN_DATASETS.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    /// Friedman's first regression problem with three extra noise features: 8 features uniform
    /// on [0, 1], y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + N(0, 1).
    pub fn friedman1(rows: usize, seed: u64) -> Self {
        const WIDTH: usize = 8;
        let mut rng = StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0f64, 1.0).expect("unit normal is valid");
        let mut features = Vec::with_capacity(rows * WIDTH);
        let mut targets = Vec::with_capacity(rows);
        for _ in 0..rows {
            let x: [f64; WIDTH] = std::array::from_fn(|_| rng.random::<f64>());
            let y = 10.0 * (std::f64::consts::PI * x[0] * x[1]).sin()
                + 20.0 * (x[2] - 0.5).powi(2)
                + 10.0 * x[3]
                + 5.0 * x[4]
                + noise.sample(&mut rng);
            features.extend(x.iter().map(|&v| v as f32));
            targets.push(y as f32);
        }
        Dataset {
            name: "friedman1".into(),
            feature_names: (1..=WIDTH).map(|i| format!("x{i}")).collect(),
            target_name: "y".into(),
            features,
            targets,
        }
    }

    /// The diabetes data set (10 features, disease progression after a year). linfa-datasets
    /// serves 441 of its 442 patients: it reads the first row as a header.
    pub fn diabetes() -> Self {
        let ds = linfa_datasets::diabetes();
        let names = ds.feature_names().to_vec();
        Self::from_linfa(
            "diabetes",
            names,
            "progression",
            &ds.records,
            &ds.targets,
            |&t| t as f32,
        )
    }

    /// The red wine quality data set (1,599 wines, 11 features, quality score 0-10).
    pub fn winequality() -> Self {
        let ds = linfa_datasets::winequality();
        let names = ds.feature_names().to_vec();
        Self::from_linfa(
            "winequality",
            names,
            "quality",
            &ds.records,
            &ds.targets,
            |&t| t as f32,
        )
    }

    fn from_linfa<T>(
        name: &str,
        feature_names: Vec<String>,
        target_name: &str,
        records: &ndarray::Array2<f64>,
        targets: &ndarray::Array1<T>,
        target: impl Fn(&T) -> f32,
    ) -> Self {
        Dataset {
            name: name.into(),
            feature_names,
            target_name: target_name.into(),
            features: records.iter().map(|&v| v as f32).collect(),
            targets: targets.iter().map(target).collect(),
        }
    }

    pub fn n_rows(&self) -> usize {
        self.targets.len()
    }

    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let w = self.n_features();
        &self.features[i * w..(i + 1) * w]
    }

    pub fn features(&self) -> &[f32] {
        &self.features
    }

    pub fn targets(&self) -> &[f32] {
        &self.targets
    }

    /// Shuffles the rows with `seed` and holds out `test_fraction` of them (rounded, at least
    /// one) for testing.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Split, Split), DataError> {
        let rows = self.n_rows();
        let test = ((rows as f64 * test_fraction).round() as usize).max(MIN_SPLIT_ROWS);
        let train = rows.saturating_sub(test);
        if train < MIN_SPLIT_ROWS || test < MIN_SPLIT_ROWS {
            return Err(DataError::TooFewRows {
                rows,
                test_fraction,
                train,
                test,
                min: MIN_SPLIT_ROWS,
            });
        }
        let mut order: Vec<usize> = (0..rows).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let (test_rows, train_rows) = order.split_at(test);
        Ok((self.take(train_rows), self.take(test_rows)))
    }

    fn take(&self, rows: &[usize]) -> Split {
        let mut x = Vec::with_capacity(rows.len() * self.n_features());
        for &r in rows {
            x.extend_from_slice(self.row(r));
        }
        Split {
            x,
            y: rows.iter().map(|&r| self.targets[r]).collect(),
            cols: self.n_features(),
        }
    }
}

/// One side of a train/test split, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub cols: usize,
}

impl Split {
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Holds out the last `fraction` of the rows (rounded, at least one) for validation: the
    /// rows to fit on, and the validation rows. The rows of a split are in shuffled order
    /// already, so the held-out part is a random one, the same for the same seed.
    pub fn hold_out(mut self, fraction: f64) -> Result<(Split, Split), DataError> {
        let rows = self.rows();
        let held = ((rows as f64 * fraction).round() as usize).max(MIN_SPLIT_ROWS);
        let kept = rows.saturating_sub(held);
        if kept < MIN_SPLIT_ROWS || held < MIN_SPLIT_ROWS {
            return Err(DataError::TooFewRows {
                rows,
                test_fraction: fraction,
                train: kept,
                test: held,
                min: MIN_SPLIT_ROWS,
            });
        }
        let validation = Split {
            x: self.x.split_off(kept * self.cols),
            y: self.y.split_off(kept),
            cols: self.cols,
        };
        Ok((self, validation))
    }
}

/// Per-column mean and standard deviation from the training rows, used to scale inputs and
/// target to zero mean and unit variance, and to scale predictions back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    pub x_mean: Vec<f32>,
    pub x_std: Vec<f32>,
    pub y_mean: f32,
    pub y_std: f32,
}

impl Standardizer {
    pub fn fit(split: &Split) -> Self {
        let cols = split.cols;
        let rows = split.rows().max(1) as f64;
        let mut sum = vec![0.0f64; cols];
        let mut sum_sq = vec![0.0f64; cols];
        for row in split.x.chunks_exact(cols) {
            for (c, &v) in row.iter().enumerate() {
                sum[c] += v as f64;
                sum_sq[c] += (v as f64) * (v as f64);
            }
        }
        let stats = |s: f64, sq: f64| {
            let mean = s / rows;
            let var = (sq / rows - mean * mean).max(0.0);
            let std = var.sqrt();
            // A constant column carries no information; scaling it by 1 keeps it finite.
            (mean as f32, if std > 1e-12 { std as f32 } else { 1.0 })
        };
        let (x_mean, x_std) = sum.iter().zip(&sum_sq).map(|(&s, &q)| stats(s, q)).unzip();
        let y_sum = split.y.iter().map(|&v| v as f64).sum();
        let y_sq = split.y.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let (y_mean, y_std) = stats(y_sum, y_sq);
        Standardizer {
            x_mean,
            x_std,
            y_mean,
            y_std,
        }
    }

    pub fn transform_x(&self, x: &[f32]) -> Vec<f32> {
        let cols = self.x_mean.len();
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(cols) {
            let scaled = row.iter().zip(&self.x_mean).zip(&self.x_std);
            out.extend(scaled.map(|((&v, &mean), &std)| (v - mean) / std));
        }
        out
    }

    pub fn transform_y(&self, y: &[f32]) -> Vec<f32> {
        y.iter().map(|&v| (v - self.y_mean) / self.y_std).collect()
    }

    pub fn inverse_y(&self, y: &[f32]) -> Vec<f32> {
        y.iter().map(|&v| v * self.y_std + self.y_mean).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friedman1_is_seeded_and_shaped() {
        let a = Dataset::friedman1(100, 7);
        assert_eq!(a, Dataset::friedman1(100, 7));
        assert_ne!(a, Dataset::friedman1(100, 8));
        assert_eq!((a.n_rows(), a.n_features()), (100, 8));
        assert!(a.features().iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn real_datasets_load() {
        let d = Dataset::builtin("diabetes", 0).unwrap();
        // linfa-datasets reads its header-less diabetes file as if it had a header, so one of
        // the 442 patients is lost.
        assert_eq!((d.n_rows(), d.n_features()), (441, 10));
        let w = Dataset::builtin("winequality", 0).unwrap();
        assert_eq!((w.n_rows(), w.n_features()), (1599, 11));
        assert!(matches!(
            Dataset::builtin("mnist", 0),
            Err(DataError::UnknownDataset { .. })
        ));
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let d = Dataset::friedman1(50, 1);
        let (train, test) = d.split(0.2, 3).unwrap();
        assert_eq!((train.rows(), test.rows()), (40, 10));
        assert_eq!(d.split(0.2, 3).unwrap(), (train.clone(), test.clone()));
        let mut all: Vec<f32> = train.y.iter().chain(&test.y).copied().collect();
        let mut orig = d.targets().to_vec();
        all.sort_by(f32::total_cmp);
        orig.sort_by(f32::total_cmp);
        assert_eq!(all, orig);
        assert!(matches!(
            Dataset::friedman1(1, 1).split(0.2, 0),
            Err(DataError::TooFewRows { .. })
        ));
    }

    #[test]
    fn standardizer_centres_and_scales() {
        let split = Split {
            x: vec![1.0, 5.0, 3.0, 5.0],
            y: vec![10.0, 20.0],
            cols: 2,
        };
        let s = Standardizer::fit(&split);
        assert_eq!(s.x_mean, vec![2.0, 5.0]);
        assert_eq!(s.x_std, vec![1.0, 1.0]); // second column is constant
        assert_eq!(s.transform_x(&split.x), vec![-1.0, 0.0, 1.0, 0.0]);
        assert_eq!((s.y_mean, s.y_std), (15.0, 5.0));
        assert_eq!(s.inverse_y(&s.transform_y(&split.y)), split.y);
    }
}
