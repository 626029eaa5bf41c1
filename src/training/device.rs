//! Which hardware a training runs on: `cpu` (burn's `flex` backend) or `gpu:N` (burn's `wgpu`
//! backend, with the `gpu` cargo feature).

use burn::tensor::Device;

use super::TrainError;
pub use super::device_kind::{DeviceClass, DeviceSpec};

impl DeviceSpec {
    /// The burn device for this spec, or why it cannot be had on this machine and build.
    pub fn burn_device(&self) -> Result<Device, TrainError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            DeviceSpec::Gpu(index) => {
                gpus()
                    .get(*index as usize)
                    .cloned()
                    .ok_or_else(|| TrainError::DeviceUnavailable {
                        device: self.to_string(),
                        reason: no_gpu_reason(),
                    })
            }
        }
    }
}

/// The GPUs this build can use, found once (opening every adapter is slow).
#[cfg(feature = "gpu")]
fn gpus() -> &'static [Device] {
    static GPUS: std::sync::OnceLock<Vec<Device>> = std::sync::OnceLock::new();
    GPUS.get_or_init(|| Device::enumerate(burn::tensor::DeviceType::Wgpu).into_vec())
}

#[cfg(not(feature = "gpu"))]
fn gpus() -> &'static [Device] {
    &[]
}

fn no_gpu_reason() -> String {
    if cfg!(feature = "gpu") {
        format!("this machine has {} GPU(s) that wgpu can use", gpus().len())
    } else {
        "this build has no GPU support (build with --features gpu)".into()
    }
}

/// How many GPUs this build can use on this machine.
pub fn gpu_count() -> usize {
    gpus().len()
}

/// The trainers' devices from a config: `auto` is one trainer per GPU, or one CPU trainer per
/// core when there is no GPU (or no `gpu` feature); a list is checked device by device.
pub fn resolve_devices(setting: &[String]) -> Result<(Vec<DeviceSpec>, Option<String>), String> {
    if setting.len() == 1 && setting[0] == "auto" {
        let gpus = gpu_count();
        if gpus > 0 {
            return Ok(((0..gpus as u32).map(DeviceSpec::Gpu).collect(), None));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let why = format!(
            "devices = \"auto\" found no GPU ({}); using {cores} CPU trainer(s)",
            no_gpu_reason()
        );
        return Ok((vec![DeviceSpec::Cpu; cores], Some(why)));
    }
    let mut devices = Vec::new();
    for name in setting {
        let device: DeviceSpec = name.parse()?;
        if let DeviceSpec::Gpu(index) = device
            && index as usize >= gpu_count()
        {
            return Err(format!(
                "device {name:?} does not exist: {}",
                no_gpu_reason()
            ));
        }
        devices.push(device);
    }
    Ok((devices, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_cpu_and_missing_gpus_are_named() {
        if gpu_count() == 0 {
            let (devices, why) = resolve_devices(&["auto".into()]).unwrap();
            assert!(!devices.is_empty() && devices.iter().all(|d| *d == DeviceSpec::Cpu));
            assert!(why.unwrap().contains("found no GPU"));
        }
        let err = resolve_devices(&["cpu".into(), "gpu:7".into()]).unwrap_err();
        assert!(err.contains("\"gpu:7\" does not exist"), "{err}");
        assert_eq!(
            resolve_devices(&["cpu".into(), "cpu".into()])
                .unwrap()
                .0
                .len(),
            2
        );
        assert!(DeviceClass::Any.accepts(&DeviceSpec::Gpu(0)));
        assert!(!DeviceClass::Gpu.accepts(&DeviceSpec::Cpu));
    }

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
