//! A sweep's search space: one distribution per hyperparameter, the trials' parameters drawn
//! from it (`random`) or enumerated (`grid`), and how a trial's parameters are applied to its
//! training.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::training::{ModelType, TrainSpec};

/// Most values a grid may enumerate (its trials).
pub const MAX_GRID: usize = 10_000;

/// The hyperparameters a space may search, and whether each is a whole number.
const PARAMS: [(&str, Kind); 7] = [
    ("learning_rate", Kind::Real),
    ("hidden_sizes", Kind::Layers),
    ("batch_size", Kind::Whole),
    ("epochs", Kind::Whole),
    ("n_trees", Kind::Whole),
    ("max_depth", Kind::Whole),
    ("min_samples_leaf", Kind::Whole),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Real,
    Whole,
    Layers,
}

/// One hyperparameter's distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    /// Whole numbers from the first to the second, both included.
    Int(i64, i64),
    Choice(Vec<Value>),
}

/// A parsed space: the parameters in their order as posted.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub params: Vec<(String, Dist)>,
}

impl Space {
    /// Reads `{"learning_rate": {"loguniform": [1e-4, 1e-1]}, ...}`; every problem is listed,
    /// each named by its key (`space.learning_rate`).
    pub fn parse(value: &Value, model_type: ModelType) -> Result<Space, Vec<String>> {
        let mut problems = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![
                "space must be an object of parameter -> distribution".into(),
            ]);
        };
        if object.is_empty() {
            problems.push("space must name at least one parameter".into());
        }
        let mut params = Vec::new();
        for (name, spec) in object {
            let at = format!("space.{name}");
            let Some(&(_, kind)) = PARAMS.iter().find(|(n, _)| n == name) else {
                let known: Vec<&str> = PARAMS.iter().map(|(n, _)| *n).collect();
                problems.push(format!(
                    "{at}: unknown parameter; known: {}",
                    known.join(", ")
                ));
                continue;
            };
            let neural_only = matches!(name.as_str(), "hidden_sizes" | "batch_size" | "epochs");
            let trees_only = matches!(name.as_str(), "n_trees" | "max_depth" | "min_samples_leaf");
            if (neural_only && model_type == ModelType::Gbdt)
                || (trees_only && model_type != ModelType::Gbdt)
                || (name == "hidden_sizes" && model_type != ModelType::Mlp)
            {
                problems.push(format!("{at}: not a parameter of {model_type}"));
                continue;
            }
            match parse_dist(spec, kind) {
                Ok(dist) => params.push((name.clone(), dist)),
                Err(problem) => problems.push(format!("{at}: {problem}")),
            }
        }
        if problems.is_empty() {
            Ok(Space { params })
        } else {
            Err(problems)
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.params.iter().any(|(n, _)| n == name)
    }

    /// `trials` parameter sets drawn at random, seeded: the same seed gives the same sets.
    pub fn sample(&self, trials: usize, seed: u64) -> Vec<Map<String, Value>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..trials)
            .map(|_| {
                self.params
                    .iter()
                    .map(|(name, dist)| (name.clone(), draw(dist, &mut rng)))
                    .collect()
            })
            .collect()
    }

    /// How many sets the grid has, or why there is no grid (a continuous distribution).
    pub fn grid_size(&self) -> Result<usize, String> {
        let mut size: usize = 1;
        for (name, dist) in &self.params {
            let n = match dist {
                Dist::Choice(values) => values.len(),
                Dist::Int(a, b) => (b - a + 1) as usize,
                _ => {
                    return Err(format!(
                        "space.{name}: a grid takes choice and int parameters only"
                    ));
                }
            };
            size = size.saturating_mul(n);
        }
        if size > MAX_GRID {
            return Err(format!("the grid has {size} points, more than {MAX_GRID}"));
        }
        Ok(size)
    }

    /// Every combination of the parameters' values, once, the last parameter varying fastest.
    pub fn grid(&self) -> Vec<Map<String, Value>> {
        let axes: Vec<(&String, Vec<Value>)> = self
            .params
            .iter()
            .map(|(name, dist)| {
                let values = match dist {
                    Dist::Choice(values) => values.clone(),
                    Dist::Int(a, b) => (*a..=*b).map(|v| json!(v)).collect(),
                    _ => Vec::new(),
                };
                (name, values)
            })
            .collect();
        let mut out = vec![Map::new()];
        for (name, values) in axes {
            out = out
                .into_iter()
                .flat_map(|set| {
                    values.iter().map(move |v| {
                        let mut set = set.clone();
                        set.insert(name.clone(), v.clone());
                        set
                    })
                })
                .collect();
        }
        out
    }
}

fn parse_dist(spec: &Value, kind: Kind) -> Result<Dist, String> {
    let expected = "one of {\"uniform\": [a, b]}, {\"loguniform\": [a, b]}, {\"int\": [a, b]}, {\"choice\": [...]}";
    let Some((form, args)) = spec
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    else {
        return Err(format!("expected {expected}"));
    };
    let pair = || -> Result<(f64, f64), String> {
        match args.as_array().map(Vec::as_slice) {
            Some([a, b]) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) if a.is_finite() && b.is_finite() && a <= b => Ok((a, b)),
                _ => Err(format!("{form} takes two numbers, the first no larger")),
            },
            _ => Err(format!("{form} takes [low, high]")),
        }
    };
    match (form.as_str(), kind) {
        ("choice", _) => {
            let values = args
                .as_array()
                .filter(|v| !v.is_empty())
                .ok_or("choice takes a non-empty list")?;
            for v in values {
                let fits = match kind {
                    Kind::Real => v.as_f64().is_some(),
                    Kind::Whole => v.as_u64().is_some(),
                    Kind::Layers => v
                        .as_array()
                        .is_some_and(|l| l.iter().all(|s| s.as_u64().is_some())),
                };
                if !fits {
                    let what = match kind {
                        Kind::Real => "numbers",
                        Kind::Whole => "whole numbers",
                        Kind::Layers => "lists of layer sizes",
                    };
                    return Err(format!("choice must list {what}, got {v}"));
                }
            }
            Ok(Dist::Choice(values.clone()))
        }
        ("uniform", Kind::Real) => pair().map(|(a, b)| Dist::Uniform(a, b)),
        ("loguniform", Kind::Real) => match pair()? {
            (a, b) if a > 0.0 => Ok(Dist::LogUniform(a, b)),
            _ => Err("loguniform takes bounds above 0".into()),
        },
        ("int", Kind::Whole) => match pair()? {
            (a, b) if a >= 0.0 && a.fract() == 0.0 && b.fract() == 0.0 => {
                Ok(Dist::Int(a as i64, b as i64))
            }
            _ => Err("int takes two whole numbers from 0".into()),
        },
        ("uniform" | "loguniform" | "int", _) => {
            Err(format!("{form} does not fit this parameter; use choice"))
        }
        _ => Err(format!("expected {expected}")),
    }
}

fn draw(dist: &Dist, rng: &mut StdRng) -> Value {
    match dist {
        Dist::Uniform(a, b) => json!(a + (b - a) * rng.random::<f64>()),
        Dist::LogUniform(a, b) => {
            let (la, lb) = (a.ln(), b.ln());
            json!((la + (lb - la) * rng.random::<f64>()).exp())
        }
        Dist::Int(a, b) => json!(rng.random_range(*a..=*b)),
        Dist::Choice(values) => values[rng.random_range(0..values.len())].clone(),
    }
}

/// Applies a trial's parameters to its training (`learning_rate` is the trees' own for gbdt).
pub fn apply(params: &Map<String, Value>, spec: &mut TrainSpec) {
    let whole = |v: &Value| v.as_u64().unwrap_or(0).min(u32::MAX as u64) as u32;
    for (name, value) in params {
        match name.as_str() {
            "learning_rate" if spec.model_type == ModelType::Gbdt => {
                spec.gbdt.learning_rate = value.as_f64().unwrap_or(f64::NAN)
            }
            "learning_rate" => spec.learning_rate = value.as_f64().unwrap_or(f64::NAN),
            "hidden_sizes" => {
                spec.hidden_sizes = value
                    .as_array()
                    .map(|l| l.iter().map(whole).collect())
                    .unwrap_or_default()
            }
            "batch_size" => spec.batch_size = whole(value),
            "epochs" => spec.epochs = whole(value),
            "n_trees" => spec.gbdt.n_trees = whole(value),
            "max_depth" => spec.gbdt.max_depth = whole(value),
            "min_samples_leaf" => spec.gbdt.min_samples_leaf = whole(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(v: Value, model: ModelType) -> Space {
        Space::parse(&v, model).unwrap()
    }

    #[test]
    fn every_problem_is_listed_by_key() {
        let problems = Space::parse(
            &json!({
                "learning_rate": {"loguniform": [0, 1]},
                "n_trees": {"int": [1, 5]},
                "batch_size": {"uniform": [1, 5]},
                "dropout": {"uniform": [0, 1]},
                "hidden_sizes": {"choice": [[8], "wide"]}
            }),
            ModelType::Mlp,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        for key in [
            "learning_rate",
            "n_trees",
            "batch_size",
            "dropout",
            "hidden_sizes",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("space.{key}:"))),
                "{key}: {problems:?}"
            );
        }
    }

    #[test]
    fn random_sets_are_seeded_and_within_their_bounds() {
        let s = space(
            json!({"learning_rate": {"loguniform": [1e-4, 1e-1]},
                   "batch_size": {"int": [16, 20]},
                   "hidden_sizes": {"choice": [[16], [32, 16]]}}),
            ModelType::Mlp,
        );
        let a = s.sample(50, 1);
        assert_eq!(a, s.sample(50, 1));
        assert_ne!(a, s.sample(50, 2));
        for set in &a {
            let lr = set["learning_rate"].as_f64().unwrap();
            assert!((1e-4..=1e-1).contains(&lr), "{lr}");
            assert!((16..=20).contains(&set["batch_size"].as_u64().unwrap()));
            assert!(set["hidden_sizes"].is_array());
        }
    }

    #[test]
    fn a_grid_covers_each_point_exactly_once() {
        let s = space(
            json!({"batch_size": {"int": [1, 3]}, "hidden_sizes": {"choice": [[4], [8], [8, 4]]}}),
            ModelType::Mlp,
        );
        assert_eq!(s.grid_size(), Ok(9));
        let grid = s.grid();
        assert_eq!(grid.len(), 9);
        let mut seen: Vec<String> = grid
            .iter()
            .map(|g| Value::from(g.clone()).to_string())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9, "each point once");
        let continuous = space(
            json!({"learning_rate": {"uniform": [0, 1]}}),
            ModelType::Mlp,
        );
        assert!(continuous.grid_size().is_err());
    }

    #[test]
    fn parameters_apply_to_their_model() {
        let mut params = Map::new();
        params.insert("learning_rate".into(), json!(0.05));
        params.insert("max_depth".into(), json!(3));
        let mut trees = TrainSpec::new(ModelType::Gbdt);
        apply(&params, &mut trees);
        assert_eq!((trees.gbdt.learning_rate, trees.gbdt.max_depth), (0.05, 3));
        let mut mlp = TrainSpec::new(ModelType::Mlp);
        params.remove("max_depth");
        params.insert("hidden_sizes".into(), json!([8, 4]));
        apply(&params, &mut mlp);
        assert_eq!((mlp.learning_rate, mlp.hidden_sizes), (0.05, vec![8, 4]));
    }
}
