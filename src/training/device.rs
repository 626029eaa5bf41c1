//! Which hardware a training runs on: `cpu` (burn's `flex` backend) or `gpu:N` (burn's `wgpu`
//! backend, with the `gpu` cargo feature).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use super::TrainError;

/// A device as named in configs and requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Gpu(u32),
}

impl DeviceSpec {
    /// The burn device for this spec, or why it cannot be had in this build.
    pub fn burn_device(&self) -> Result<Device, TrainError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "gpu")]
            DeviceSpec::Gpu(index) => Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(
                *index as usize,
            ))),
            #[cfg(not(feature = "gpu"))]
            DeviceSpec::Gpu(_) => Err(TrainError::DeviceUnavailable {
                device: self.to_string(),
                reason: "this build has no GPU support (build with --features gpu)".into(),
            }),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, DeviceSpec::Gpu(_))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Gpu(index) => write!(f, "gpu:{index}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("unknown device {s:?}; expected \"cpu\" or \"gpu:N\"");
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            _ => {
                let index = s.strip_prefix("gpu:").ok_or_else(bad)?;
                index.parse().map(DeviceSpec::Gpu).map_err(|_| bad())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_devices() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("gpu:3".parse(), Ok(DeviceSpec::Gpu(3)));
        assert_eq!(DeviceSpec::Gpu(1).to_string(), "gpu:1");
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("gpu:x".parse::<DeviceSpec>().is_err());
        assert!("tpu:0".parse::<DeviceSpec>().is_err());
    }
}
