//! What a training needs, estimated before it runs: the parameters of its largest model and
//! the working memory of its hungriest, which the API checks against the node's bounds.

use super::spec::{ModelType, TrainSpec};

/// What a training needs, estimated before it runs (see [`TrainSpec::footprint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Parameters of its largest model: weights and biases, or tree nodes.
    pub parameters: u64,
    /// Bytes of working memory of its hungriest model, with the data.
    pub working_bytes: u64,
}

/// Rows and features of a built-in data set (`friedman1` at its default size), for estimates.
pub fn builtin_shape(name: &str) -> Option<(usize, usize)> {
    match name {
        "friedman1" => Some((super::FRIEDMAN1_DEFAULT_ROWS, 8)),
        "diabetes" => Some((442, 10)),
        "winequality" => Some((1599, 11)),
        _ => None,
    }
}

/// Bytes of one f32.
const F32: u64 = 4;
/// Copies of each parameter a burn model holds while it trains: the weight, its gradient and
/// Adam's two moments.
const PARAM_COPIES: u64 = 4;
/// Values kept per unit of each layer and row of a batch: the output, what autodiff keeps for
/// the backward pass (pre-activation, ReLU mask) and the gradient.
const ACTIVATION_COPIES: u64 = 4;
/// Bytes of one tree node as the trees crate keeps it, with its split statistics.
const TREE_NODE_BYTES: u64 = 128;
/// Bytes per row and feature while trees are fitted: the values, their bins and the sorted
/// index the splits are searched with.
const TREE_CELL_BYTES: u64 = 16;

impl TrainSpec {
    /// An estimate of what training this spec on `rows` rows of `features` features needs:
    /// the parameters of its largest model and the working memory of its hungriest (the
    /// models of `all` are trained one after the other). Saturating, so any spec is safe to
    /// estimate.
    pub fn footprint(&self, rows: usize, features: usize) -> Footprint {
        if self.model_type == ModelType::Noop {
            return Footprint {
                parameters: 0,
                working_bytes: 0,
            };
        }
        let (rows, features) = (rows as u64, features as u64);
        let train_rows = ((rows as f64) * (1.0 - self.test_fraction.clamp(0.0, 1.0))).ceil() as u64;
        // The data set, and the train and test splits copied out of it.
        let data = rows
            .saturating_mul(features.saturating_add(1))
            .saturating_mul(F32 * 2);
        let mut out = Footprint {
            parameters: 0,
            working_bytes: 0,
        };
        for model in self.model_type.members() {
            let (parameters, working) = match model {
                ModelType::Mlp | ModelType::Linear => {
                    let hidden: &[u32] = if *model == ModelType::Mlp {
                        &self.hidden_sizes
                    } else {
                        &[]
                    };
                    let widths: Vec<u64> = std::iter::once(features)
                        .chain(hidden.iter().map(|&h| h as u64))
                        .chain(std::iter::once(1))
                        .collect();
                    let parameters = widths
                        .windows(2)
                        .map(|w| w[0].saturating_mul(w[1]).saturating_add(w[1]))
                        .fold(0u64, u64::saturating_add);
                    let batch = (self.batch_size as u64).min(train_rows.max(1));
                    let units = widths.iter().fold(0u64, |a, w| a.saturating_add(*w));
                    let activations = batch
                        .saturating_mul(units)
                        .saturating_mul(F32 * ACTIVATION_COPIES);
                    let weights = parameters.saturating_mul(F32 * PARAM_COPIES);
                    (parameters, weights.saturating_add(activations))
                }
                ModelType::Noop => (0, 0),
                ModelType::Gbdt | ModelType::All => {
                    let trees = &self.gbdt;
                    let by_depth = (1u64 << (trees.max_depth.min(40) + 1)) - 1;
                    let by_rows = train_rows
                        .div_ceil(trees.min_samples_leaf.max(1) as u64)
                        .saturating_mul(2);
                    let nodes = (trees.n_trees as u64).saturating_mul(by_depth.min(by_rows.max(1)));
                    let cells = rows
                        .saturating_mul(features)
                        .saturating_mul(TREE_CELL_BYTES);
                    // Each row's prediction, gradient and hessian.
                    let per_row = rows.saturating_mul(3 * F32);
                    let working = nodes
                        .saturating_mul(TREE_NODE_BYTES)
                        .saturating_add(cells)
                        .saturating_add(per_row);
                    (nodes, working)
                }
            };
            out.parameters = out.parameters.max(parameters);
            out.working_bytes = out.working_bytes.max(working.saturating_add(data));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::GbdtParams;

    #[test]
    fn footprints_grow_with_the_model_and_the_batch() {
        let (rows, features) = builtin_shape("friedman1").unwrap();
        let small = TrainSpec::new(ModelType::Mlp).footprint(rows, features);
        // 8 -> 64 -> 32 -> 16 -> 1.
        assert_eq!(
            small.parameters,
            8 * 64 + 64 + 64 * 32 + 32 + 32 * 16 + 16 + 16 + 1
        );
        assert!(small.working_bytes < 16 << 20, "{small:?}");
        let huge = TrainSpec {
            hidden_sizes: vec![4096; 8],
            batch_size: 65_536,
            ..TrainSpec::default()
        }
        .footprint(rows, features);
        assert!(huge.parameters > 100_000_000, "{huge:?}");
        assert!(huge.working_bytes > 4 << 30, "{huge:?}");
        let linear = TrainSpec::new(ModelType::Linear).footprint(rows, features);
        assert_eq!(linear.parameters, 9);
        let trees = TrainSpec::new(ModelType::Gbdt).footprint(rows, features);
        assert_eq!(trees.parameters, 100 * 127);
        // `all` is as large as its largest member.
        let all = TrainSpec::new(ModelType::All).footprint(rows, features);
        assert_eq!(all.parameters, trees.parameters.max(small.parameters));
        // Every spec estimates without overflow.
        let most = TrainSpec {
            model_type: ModelType::All,
            hidden_sizes: vec![u32::MAX; 64],
            batch_size: u32::MAX,
            gbdt: GbdtParams {
                n_trees: u32::MAX,
                max_depth: u32::MAX,
                ..GbdtParams::default()
            },
            ..TrainSpec::default()
        }
        .footprint(usize::MAX, usize::MAX);
        assert_eq!(most.parameters, u64::MAX);
    }
}
