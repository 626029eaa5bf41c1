//! burn models: an MLP with ReLU hidden layers, and linear regression (the same network with no
//! hidden layer). Inputs and target are standardised with training statistics; MSE loss, Adam.

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig, Relu};
use burn::optim::{Adam, AdamConfig, AdamState, AdaptiveMomentumState, Optimizer};
use burn::store::ModuleRecord;
use burn::tensor::activation::relu;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::checkpoint::{MemberState, NeuralState, ParamState};
use super::data::{Split, Standardizer};
use super::{Control, TrainError};

/// Rows per forward pass when scoring or predicting.
const INFERENCE_CHUNK: usize = 8192;

/// Mixed into the seed for the initial weights, so they are not drawn from the same stream
/// as the batch order (which a resumed fit replays from the bare seed).
const WEIGHTS_STREAM: u64 = 0x5745_4947_4854_5321;

/// A stack of linear layers with ReLU between them.
#[derive(Module, Debug)]
pub struct Network {
    layers: Vec<Linear>,
    activation: Relu,
}

impl Network {
    /// `inputs -> hidden[0] -> ... -> 1`; no hidden sizes gives linear regression.
    ///
    /// Weights and biases are drawn as burn's `Linear` draws them, `U(-k, k)` with
    /// `k = 1 / sqrt(fan_in)`, but from an RNG of the network's own seeded with `seed`: burn's
    /// device RNG is one per device, shared by every trainer on the node, so seeding it and
    /// then drawing raced with the other trainers and the same seed gave other weights.
    pub fn new(inputs: usize, hidden: &[u32], seed: u64, device: &Device) -> Self {
        let mut sizes = vec![inputs];
        sizes.extend(hidden.iter().map(|&h| h as usize));
        sizes.push(1);
        let mut rng = StdRng::seed_from_u64(seed ^ WEIGHTS_STREAM);
        let mut uniform =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-k..=k)).collect() };
        let layers = sizes
            .windows(2)
            .map(|w| {
                let (fan_in, fan_out) = (w[0], w[1]);
                let k = 1.0 / (fan_in as f32).sqrt();
                let weight = uniform(fan_in * fan_out, k);
                let bias = uniform(fan_out, k);
                let layer = LinearConfig::new(fan_in, fan_out)
                    .with_initializer(Initializer::Zeros)
                    .init(device);
                Linear {
                    weight: layer.weight.map(|_| {
                        Tensor::from_data(TensorData::new(weight, [fan_in, fan_out]), device)
                    }),
                    bias: layer.bias.map(|b| {
                        b.map(|_| Tensor::from_data(TensorData::new(bias, [fan_out]), device))
                    }),
                }
            })
            .collect();
        Network {
            layers,
            activation: Relu::new(),
        }
    }

    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.activation.forward(x);
            }
        }
        x
    }

    /// Predictions on the standardised scale for row-major, standardised `x`.
    fn predict_scaled(&self, x: &[f32], cols: usize, device: &Device) -> Vec<f32> {
        in_chunks(x, cols, device, |input| self.forward(input))
    }
}

/// `forward`'s outputs for row-major `x`, `INFERENCE_CHUNK` rows at a time.
fn in_chunks(
    x: &[f32],
    cols: usize,
    device: &Device,
    forward: impl Fn(Tensor<2>) -> Tensor<2>,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / cols);
    for chunk in x.chunks(INFERENCE_CHUNK * cols) {
        let rows = chunk.len() / cols;
        let input = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [rows, cols]), device);
        let values = forward(input).into_data().try_into_vec::<f32>();
        out.extend(values.expect("network output is f32"));
    }
    out
}

/// A trained burn model with what it needs to predict on raw rows.
pub struct NeuralModel {
    pub hidden: Vec<u32>,
    pub scaler: Standardizer,
    network: Network,
    device: Device,
}

impl NeuralModel {
    /// Predictions on the original scale for raw row-major `x`.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let cols = self.scaler.x_mean.len();
        let scaled = self
            .network
            .predict_scaled(&self.scaler.transform_x(x), cols, &self.device);
        self.scaler.inverse_y(&scaled)
    }

    /// The weights as burnpack bytes.
    pub fn weights(&self) -> Result<Vec<u8>, TrainError> {
        let bytes = self
            .network
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| TrainError::Backend(format!("cannot save weights: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// Rebuilds a model from its architecture, scaler and burnpack weights, on the CPU.
    pub fn load(
        hidden: Vec<u32>,
        scaler: Standardizer,
        weights: &[u8],
    ) -> Result<Self, TrainError> {
        let device = Device::flex();
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec()))
            .map_err(|e| TrainError::InvalidModel(format!("weights are not burnpack: {e}")))?;
        // The drawn weights are replaced by the record's.
        let network = Network::new(scaler.x_mean.len(), &hidden, 0, &device)
            .try_load_record(record)
            .map_err(|e| {
                TrainError::InvalidModel(format!("weights do not fit the network: {e}"))
            })?;
        Ok(NeuralModel {
            hidden,
            scaler,
            network,
            device,
        })
    }
}

/// The result of fitting: the model, the last epoch's loss (standardised scale) and the
/// seconds spent in the epoch loop.
pub struct Fitted {
    pub model: NeuralModel,
    pub last_epoch_loss: f64,
    pub fit_s: f64,
}

/// A layer's parameters while it trains.
struct TrainingLayer {
    weight: Parameter<2>,
    bias: Parameter<1>,
}

/// A parameter while it trains, with its Adam state.
struct Parameter<const D: usize> {
    value: Tensor<D>,
    state: Option<AdamState<D>>,
}

impl<const D: usize> Parameter<D> {
    fn new(value: Tensor<D>) -> Self {
        Parameter { value, state: None }
    }

    /// The values and the Adam state, for a checkpoint.
    fn state(&self) -> ParamState {
        let values = |t: &Tensor<D>| {
            t.clone()
                .into_data()
                .try_into_vec::<f32>()
                .expect("parameters are f32")
        };
        ParamState {
            shape: self.value.dims().iter().map(|&d| d as u64).collect(),
            values: values(&self.value),
            adam: self.state.as_ref().map(|s| {
                let m = &s.momentum;
                (m.time as u64, values(&m.moment_1), values(&m.moment_2))
            }),
        }
    }

    /// The parameter a checkpoint saved, if it has this one's shape.
    fn restore(&self, saved: &ParamState, device: &Device) -> Result<Self, TrainError> {
        let dims = self.value.dims();
        let shape: Vec<usize> = saved.shape.iter().map(|&d| d as usize).collect();
        let size: usize = dims.iter().product();
        let fits = |v: &[f32]| v.len() == size;
        if shape != dims
            || !fits(&saved.values)
            || saved
                .adam
                .as_ref()
                .is_some_and(|(_, m1, m2)| !fits(m1) || !fits(m2))
        {
            return Err(TrainError::Checkpoint(format!(
                "a parameter of shape {:?} does not fit the network's {dims:?}",
                saved.shape
            )));
        }
        let tensor =
            |v: &[f32]| Tensor::<D>::from_data(TensorData::new(v.to_vec(), shape.clone()), device);
        Ok(Parameter {
            value: tensor(&saved.values),
            state: saved.adam.as_ref().map(|(time, m1, m2)| AdamState {
                momentum: AdaptiveMomentumState {
                    time: *time as usize,
                    moment_1: tensor(m1),
                    moment_2: tensor(m2),
                    max_moment_2: None,
                },
            }),
        })
    }

    /// One update by `adam` with gradient `grad`.
    fn update(&mut self, adam: &Adam, learning_rate: f64, grad: Tensor<D>) {
        let (value, state) = adam.step(learning_rate, self.value.clone(), grad, self.state.take());
        (self.value, self.state) = (value, state);
    }
}

/// What a training step needs: the layers and the optimizer that updates them.
///
/// The gradients are computed directly rather than through burn's autodiff: the network is a
/// fixed stack of linear layers with ReLU, whose backward pass is two matrix products and a
/// sum per layer. burn's autodiff records every operation in a graph, which for the small
/// batches of a quick training cost several times the arithmetic (about 40 us a step for a
/// linear model on 64 rows, against 13 us computed directly). The update is burn's own Adam;
/// `direct_gradients_match_autodiff` checks that both ways give the same gradients and weights.
struct TrainingNetwork {
    layers: Vec<TrainingLayer>,
    adam: Adam,
}

impl TrainingNetwork {
    fn new(network: &Network) -> Self {
        let layers = network
            .layers
            .iter()
            .map(|layer| TrainingLayer {
                weight: Parameter::new(layer.weight.val()),
                bias: Parameter::new(layer.bias.as_ref().expect("layers have a bias").val()),
            })
            .collect();
        TrainingNetwork {
            layers,
            adam: AdamConfig::new().build(),
        }
    }

    /// Each layer's weight and bias with their Adam state, for a checkpoint.
    fn state(&self) -> Vec<(ParamState, ParamState)> {
        self.layers
            .iter()
            .map(|l| (l.weight.state(), l.bias.state()))
            .collect()
    }

    /// The layers as a checkpoint saved them, if they fit this network.
    fn restore(
        &mut self,
        saved: &[(ParamState, ParamState)],
        device: &Device,
    ) -> Result<(), TrainError> {
        if saved.len() != self.layers.len() {
            return Err(TrainError::Checkpoint(format!(
                "{} layers, the network has {}",
                saved.len(),
                self.layers.len()
            )));
        }
        for (layer, (weight, bias)) in self.layers.iter_mut().zip(saved) {
            *layer = TrainingLayer {
                weight: layer.weight.restore(weight, device)?,
                bias: layer.bias.restore(bias, device)?,
            };
        }
        Ok(())
    }

    /// Predictions on the standardised scale for row-major, standardised `x`, with the
    /// weights as they are now.
    fn predict_scaled(&self, x: &[f32], cols: usize, device: &Device) -> Vec<f32> {
        let last = self.layers.len() - 1;
        in_chunks(x, cols, device, |mut z| {
            for (i, layer) in self.layers.iter().enumerate() {
                z = z.matmul(layer.weight.value.clone()) + layer.bias.value.clone().unsqueeze();
                if i < last {
                    z = relu(z);
                }
            }
            z
        })
    }

    /// One step of gradient descent on a batch; returns the batch's mean squared error
    /// before the step.
    fn step(&mut self, x: Tensor<2>, y: Tensor<2>, learning_rate: f64) -> f32 {
        let (loss, gradients) = self.gradients(x, y);
        for (layer, (weight_grad, bias_grad)) in self.layers.iter_mut().zip(gradients) {
            layer.weight.update(&self.adam, learning_rate, weight_grad);
            layer.bias.update(&self.adam, learning_rate, bias_grad);
        }
        loss
    }

    /// The batch's mean squared error, and its gradient with respect to each layer's weight
    /// and bias (in layer order).
    fn gradients(&self, x: Tensor<2>, y: Tensor<2>) -> (f32, Vec<(Tensor<2>, Tensor<1>)>) {
        let rows = x.dims()[0];
        let last = self.layers.len() - 1;
        // Forward, keeping each layer's input for the backward pass.
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut out = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let z = out.clone().matmul(layer.weight.value.clone())
                + layer.bias.value.clone().unsqueeze();
            inputs.push(out);
            out = if i < last { relu(z) } else { z };
        }
        let error = out - y;
        let loss = error.clone().square().mean().into_scalar::<f32>();
        // Backward: `grad` is the gradient of the loss with respect to a layer's output,
        // d(mean((out - y)^2)) / d out for the last one.
        let mut grad = error.mul_scalar(2.0 / rows as f32);
        let mut gradients = Vec::with_capacity(self.layers.len());
        for (i, input) in inputs.into_iter().enumerate().rev() {
            let weight_grad = input.clone().transpose().matmul(grad.clone());
            let bias_grad = grad.clone().sum_dim(0).squeeze_dim::<1>(0);
            if i > 0 {
                // Through this layer's weights and the ReLU that made its input.
                let inactive = input.lower_equal_elem(0.0);
                grad = grad
                    .matmul(self.layers[i].weight.value.clone().transpose())
                    .mask_fill(inactive, 0.0);
            }
            gradients.push((weight_grad, bias_grad));
        }
        gradients.reverse();
        (loss, gradients)
    }

    /// The network with the trained weights (same parameter ids as `network`).
    fn into_network(self, network: Network) -> Network {
        let layers = network
            .layers
            .into_iter()
            .zip(self.layers)
            .map(|(layer, trained)| Linear {
                weight: layer.weight.map(|_| trained.weight.value),
                bias: layer.bias.map(|bias| bias.map(|_| trained.bias.value)),
            })
            .collect();
        Network {
            layers,
            activation: network.activation,
        }
    }
}

/// What a network trains with: its hyperparameters and seed.
pub struct NeuralParams<'h> {
    pub hidden: &'h [u32],
    pub epochs: u32,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub seed: u64,
}

/// Trains a network on `train` for `epochs`, reporting after every epoch through `control`,
/// and saving a checkpoint at an epoch's end when `control` says one is due. From `resume`
/// (a checkpoint's state), it goes on after the checkpoint's epoch exactly as an
/// uninterrupted fit would: the weights and Adam's state are the saved ones, and the batch
/// order is replayed from the seed (one shuffle per epoch done).
pub fn fit(
    train: &Split,
    params: &NeuralParams<'_>,
    resume: Option<&NeuralState>,
    device: &Device,
    control: &mut Control<'_>,
) -> Result<Fitted, TrainError> {
    let NeuralParams {
        hidden,
        epochs,
        learning_rate,
        batch_size,
        seed,
    } = *params;
    let cols = train.cols;
    let rows = train.rows();
    let scaler = Standardizer::fit(train);
    let network = Network::new(cols, hidden, seed, device);
    let mut training = TrainingNetwork::new(&network);
    let x_scaled = scaler.transform_x(&train.x);
    let y_scaled = scaler.transform_y(&train.y);
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = StdRng::seed_from_u64(seed);

    let started = Instant::now();
    let mut last_epoch_loss = f64::NAN;
    let (mut done, mut fit_before_s) = (0, 0.0);
    if let Some(saved) = resume {
        if saved.epoch > epochs {
            return Err(TrainError::Checkpoint(format!(
                "epoch {} of {epochs}",
                saved.epoch
            )));
        }
        training.restore(&saved.layers, device)?;
        for _ in 0..saved.epoch {
            order.shuffle(&mut rng);
        }
        (done, last_epoch_loss, fit_before_s) = (saved.epoch, saved.last_epoch_loss, saved.fit_s);
    }
    for epoch in done + 1..=epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        for batch in order.chunks(batch_size) {
            control.check()?;
            let x_batch: Vec<f32> = batch
                .iter()
                .flat_map(|&row| &x_scaled[row * cols..(row + 1) * cols])
                .copied()
                .collect();
            let y_batch: Vec<f32> = batch.iter().map(|&row| y_scaled[row]).collect();
            let n = batch.len();
            let x = Tensor::<2>::from_data(TensorData::new(x_batch, [n, cols]), device);
            let y = Tensor::<2>::from_data(TensorData::new(y_batch, [n, 1]), device);
            loss_sum += training.step(x, y, learning_rate) as f64 * n as f64;
        }
        last_epoch_loss = loss_sum / rows as f64;
        if !last_epoch_loss.is_finite() {
            return Err(TrainError::Diverged { epoch });
        }
        control.epoch_done(
            epoch,
            epochs,
            last_epoch_loss * (scaler.y_std as f64).powi(2),
        );
        if control.rung_at(epoch as u64)
            && let Some(x) = control.validation_x()
        {
            let scaled = training.predict_scaled(&scaler.transform_x(x), cols, device);
            if !control.judge(epoch as u64, &scaler.inverse_y(&scaled)) {
                break;
            }
        }
        if epoch < epochs && control.checkpoint_due() {
            let state = NeuralState {
                epoch,
                last_epoch_loss,
                layers: training.state(),
                fit_s: fit_before_s + started.elapsed().as_secs_f64(),
            };
            control.save_checkpoint(epoch as u64, MemberState::Neural(state))?;
        }
    }
    let fit_s = fit_before_s + started.elapsed().as_secs_f64();
    Ok(Fitted {
        model: NeuralModel {
            hidden: hidden.to_vec(),
            scaler,
            network: training.into_network(network),
            device: device.clone(),
        },
        last_epoch_loss,
        fit_s,
    })
}

#[cfg(test)]
mod tests {
    use burn::nn::loss::{MseLoss, Reduction};
    use burn::optim::GradientsParams;

    use super::*;

    /// Asserts that two lists of tensors hold the same values, to within float rounding.
    fn assert_close(what: &str, actual: Vec<TensorData>, expected: Vec<TensorData>) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.into_iter().zip(expected) {
            assert_eq!(a.shape(), e.shape(), "{what}");
            let (a, e) = (
                a.try_into_vec::<f32>().unwrap(),
                e.try_into_vec::<f32>().unwrap(),
            );
            for (a, e) in a.into_iter().zip(e) {
                assert!(
                    (a - e).abs() <= 1e-5 * e.abs().max(1.0),
                    "{what}: {a} != {e}"
                );
            }
        }
    }

    /// Each layer's weight and bias, in layer order.
    fn weights(network: &Network) -> Vec<TensorData> {
        network
            .layers
            .iter()
            .flat_map(|layer| {
                let bias = layer.bias.as_ref().unwrap().val().into_data();
                [layer.weight.val().into_data(), bias]
            })
            .collect()
    }

    /// The gradients computed directly are those burn's autodiff computes, and steps taken
    /// with them and burn's Adam give the weights that burn's module optimizer gives, with and
    /// without hidden ReLU layers. (The weights alone would not show a wrongly scaled
    /// gradient: Adam divides it out.)
    #[test]
    fn direct_gradients_match_autodiff() {
        let device = Device::flex();
        let (rows, cols) = (48, 5);
        let mut rng = StdRng::seed_from_u64(7);
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| rand::Rng::random_range(&mut rng, -2.0..2.0))
            .collect();
        let y: Vec<f32> = x.chunks(cols).map(|r| r[0] - 2.0 * r[3] + 0.5).collect();
        for hidden in [vec![], vec![16, 8]] {
            let start = Network::new(cols, &hidden, 3, &device);
            let mut training = TrainingNetwork::new(&start);
            let ad = device.clone().autodiff();
            let mut network = start.clone().fork(&ad).train();
            let mut optim = AdamConfig::new().init();
            // Batches of different sizes, as the last batch of an epoch can be.
            for range in [0..16, 16..32, 32..48, 8..40] {
                let n = range.len();
                let (xs, ys) = (&x[range.start * cols..range.end * cols], &y[range]);
                let batch = |data: &[f32], width: usize, device: &Device| {
                    Tensor::<2>::from_data(TensorData::new(data.to_vec(), [n, width]), device)
                };

                let (loss, gradients) =
                    training.gradients(batch(xs, cols, &device), batch(ys, 1, &device));
                let expected_loss = MseLoss::new().forward(
                    network.forward(batch(xs, cols, &ad)),
                    batch(ys, 1, &ad),
                    Reduction::Mean,
                );
                let backward = expected_loss.backward();
                let expected: Vec<TensorData> = network
                    .layers
                    .iter()
                    .flat_map(|layer| {
                        let bias = layer.bias.as_ref().unwrap().grad(&backward).unwrap();
                        [
                            layer.weight.grad(&backward).unwrap().into_data(),
                            bias.into_data(),
                        ]
                    })
                    .collect();
                let actual = gradients
                    .into_iter()
                    .flat_map(|(w, b)| [w.into_data(), b.into_data()])
                    .collect();
                assert_close(&format!("gradients, hidden {hidden:?}"), actual, expected);
                let expected_loss = expected_loss.into_scalar::<f32>();
                assert!((loss - expected_loss).abs() <= 1e-5 * expected_loss.max(1.0));

                training.step(batch(xs, cols, &device), batch(ys, 1, &device), 0.05);
                let grads = GradientsParams::from_grads(backward, &network);
                network = optim.step(0.05, network, grads);
            }
            assert_close(
                &format!("weights, hidden {hidden:?}"),
                weights(&training.into_network(start)),
                weights(&network.valid()),
            );
        }
    }
}
