//! The kind of device a task asks for and a trainer runs on, as records, queues and configs
//! name them: `DeviceSpec` (`cpu`, `gpu:N`) and `DeviceClass` (`any`, `cpu`, `gpu`). No burn
//! here, so the store and the HTTP edge can name devices without the training backends; the
//! burn device of a spec is in `device.rs`.

use std::fmt;
use std::str::FromStr;

/// A device as named in configs and requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Gpu(u32),
}

impl DeviceSpec {
    pub fn is_gpu(&self) -> bool {
        matches!(self, DeviceSpec::Gpu(_))
    }

    pub fn class(&self) -> DeviceClass {
        match self {
            DeviceSpec::Cpu => DeviceClass::Cpu,
            DeviceSpec::Gpu(_) => DeviceClass::Gpu,
        }
    }
}

/// The kind of device a task asks for.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    /// Whichever trainer is free first.
    #[default]
    Any,
    Cpu,
    Gpu,
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 3] = [DeviceClass::Any, DeviceClass::Cpu, DeviceClass::Gpu];

    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceClass::Any => "any",
            DeviceClass::Cpu => "cpu",
            DeviceClass::Gpu => "gpu",
        }
    }

    /// Whether a trainer on `device` may run a task that asks for this class.
    pub fn accepts(&self, device: &DeviceSpec) -> bool {
        *self == DeviceClass::Any || *self == device.class()
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
