//! burn models: an MLP with ReLU hidden layers, and linear regression (the same network with no
//! hidden layer). Inputs and target are standardised with training statistics; MSE loss, Adam.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::data::{Split, Standardizer};
use super::{Control, TrainError};

/// Rows per forward pass when scoring or predicting.
const INFERENCE_CHUNK: usize = 8192;

/// A stack of linear layers with ReLU between them.
#[derive(Module, Debug)]
pub struct Network {
    layers: Vec<Linear>,
    activation: Relu,
}

impl Network {
    /// `inputs -> hidden[0] -> ... -> 1`; no hidden sizes gives linear regression.
    pub fn new(inputs: usize, hidden: &[u32], device: &Device) -> Self {
        let mut sizes = vec![inputs];
        sizes.extend(hidden.iter().map(|&h| h as usize));
        sizes.push(1);
        let layers = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
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
        let mut out = Vec::with_capacity(x.len() / cols);
        for chunk in x.chunks(INFERENCE_CHUNK * cols) {
            let rows = chunk.len() / cols;
            let input =
                Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [rows, cols]), device);
            let values = self.forward(input).into_data().try_into_vec::<f32>();
            out.extend(values.expect("network output is f32"));
        }
        out
    }
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
        let network = Network::new(scaler.x_mean.len(), &hidden, &device)
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

/// Trains a network on `train` for `epochs`, reporting after every epoch through `control`.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    train: &Split,
    hidden: &[u32],
    epochs: u32,
    learning_rate: f64,
    batch_size: usize,
    seed: u64,
    device: &Device,
    control: &mut Control<'_>,
) -> Result<Fitted, TrainError> {
    let cols = train.cols;
    let rows = train.rows();
    let scaler = Standardizer::fit(train);
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let mut network = Network::new(cols, hidden, &ad);
    let mut optim = AdamConfig::new().init();
    let loss_fn = MseLoss::new();
    let x_scaled = scaler.transform_x(&train.x);
    let y_scaled = scaler.transform_y(&train.y);
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = StdRng::seed_from_u64(seed);

    let started = Instant::now();
    let mut last_epoch_loss = f64::NAN;
    for epoch in 1..=epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        for batch in order.chunks(batch_size) {
            control.check()?;
            // The batch's rows, gathered on the host: the batches are leaves of the graph, so
            // the shuffle costs no tensor operations of its own.
            let x_batch: Vec<f32> = batch
                .iter()
                .flat_map(|&row| &x_scaled[row * cols..(row + 1) * cols])
                .copied()
                .collect();
            let y_batch: Vec<f32> = batch.iter().map(|&row| y_scaled[row]).collect();
            let n = batch.len();
            let x = Tensor::<2>::from_data(TensorData::new(x_batch, [n, cols]), &ad);
            let y = Tensor::<2>::from_data(TensorData::new(y_batch, [n, 1]), &ad);
            let loss = loss_fn.forward(network.forward(x), y, Reduction::Mean);
            let grads = GradientsParams::from_grads(loss.backward(), &network);
            loss_sum += loss.into_scalar::<f32>() as f64 * n as f64;
            network = optim.step(learning_rate, network, grads);
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
    }
    let fit_s = started.elapsed().as_secs_f64();
    Ok(Fitted {
        model: NeuralModel {
            hidden: hidden.to_vec(),
            scaler,
            network: network.valid(),
            device: device.clone(),
        },
        last_epoch_loss,
        fit_s,
    })
}
