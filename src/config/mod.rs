//! The node's typed configuration: a TOML file, then `TRAINYARD_<SECTION>__<KEY>` environment
//! overrides, then validation. Unknown keys are refused with their name.

//!
//! - `sections`: one struct per `[section]`, with its defaults (the same as
//!   `config/trainyard.toml` lists).
//! - `validate`: every check made at start-up, each problem named by its key.

mod sections;
mod validate;
mod values;

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::training::{DeviceSpec, resolve_devices};

pub use sections::*;
pub use validate::{EXAMPLE_COOKIE, MIN_COOKIE_CHARS};
pub use values::{Cidr, Role, parse_allowed, parse_sha256};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeSection,
    pub http: HttpSection,
    pub store: StoreSection,
    pub trainers: TrainersSection,
    pub tasks: TasksSection,
    pub datasets: DatasetsSection,
    pub notifications: NotificationsSection,
    pub log: LogSection,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads `path` (if given), applies `TRAINYARD_*` overrides from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(e.to_string()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The trainers' devices, resolved on this machine (`auto` finds the GPUs), and a note
    /// when `auto` fell back to CPU trainers; an error names a device that does not exist.
    pub fn devices(&self) -> Result<(Vec<DeviceSpec>, Option<String>), ConfigError> {
        resolve_devices(&self.trainers.devices)
            .map_err(|e| ConfigError::Invalid(vec![format!("trainers.devices: {e}")]))
    }
}

/// A string or a list of strings, as a list.
pub(crate) fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// Sets `[section] key` from each `TRAINYARD_SECTION__KEY=value`. A value is read as TOML
/// (numbers, booleans, arrays) and, failing that, as a string; a key that holds text (a
/// cookie, a token, a name) takes the value as written, so `TRAINYARD_NODE__COOKIE=0123...`
/// is a cookie of digits, not a number.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("TRAINYARD_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_lowercase(), key.to_lowercase());
        let text = defaults
            .get(&section)
            .and_then(|s| s.get(&key))
            .is_some_and(toml::Value::is_str);
        let value = match format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
        {
            // A quoted string, or a value for a key that is not text.
            Some(value) if value.is_str() || !text => value,
            _ => toml::Value::String(raw),
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(ConfigError::Parse(format!("{section} must be a section")));
        };
        section_table.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Every key of `toml`, as `section.key`.
    fn keys(table: &toml::Table) -> std::collections::BTreeSet<String> {
        table
            .iter()
            .flat_map(|(section, keys)| {
                keys.as_table()
                    .into_iter()
                    .flatten()
                    .map(move |(key, _)| format!("{section}.{key}"))
            })
            .collect()
    }

    #[test]
    fn the_shipped_full_config_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/trainyard.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let shipped: toml::Table = text.parse().unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let mut wanted = keys(&defaults);
        // Tokens are a list of tables; the file shows one, commented out.
        wanted.insert("http.tokens".into());
        assert!(text.contains("# [[http.tokens]]"));
        let mut listed = keys(&shipped);
        listed.insert("http.tokens".into());
        assert_eq!(
            listed, wanted,
            "config/trainyard.toml and the config type differ"
        );
        assert_eq!(
            shipped, defaults,
            "a key of config/trainyard.toml is not its default"
        );
        assert_eq!(
            Config::load(Some(&path), Vec::new()).unwrap(),
            Config::default()
        );
        for section in defaults.keys() {
            assert!(text.contains(&format!("\n[{section}]\n")), "[{section}]");
        }
        // Every key has a comment above it or above its group.
        let mut commented = false;
        for line in text.lines() {
            if line.starts_with('#') {
                commented = true;
            } else if line.starts_with('[') {
                commented = false;
            } else if let Some((key, _)) = line.split_once(" = ") {
                assert!(commented, "{key} has no comment");
            } else if line.is_empty() {
                commented = false;
            }
        }
    }

    #[test]
    fn secrets_of_digits_from_the_environment_stay_text() {
        let config = Config::load(
            None,
            env(&[
                ("TRAINYARD_NODE__COOKIE", "0123456789012345"),
                ("TRAINYARD_HTTP__TOKEN", "9876543210987654"),
                ("TRAINYARD_NODE__NAME", "\"7\""),
            ]),
        )
        .unwrap();
        assert_eq!(config.node.cookie, "0123456789012345");
        assert_eq!(config.http.token, "9876543210987654");
        assert_eq!(config.node.name, "7");
    }

    #[test]
    fn env_overrides_the_file_and_types_are_kept() {
        let dir = std::env::temp_dir().join(format!("trainyard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "[http]\nlisten = \"127.0.0.1:6000\"\n[tasks]\nmax_retries = 1\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("TRAINYARD_TASKS__MAX_RETRIES", "5"),
                ("TRAINYARD_TRAINERS__DEVICES", "[\"cpu\", \"cpu\"]"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.http.listen, "127.0.0.1:6000");
        assert_eq!(config.tasks.max_retries, 5);
        assert_eq!(config.trainers.devices.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let err = Config::load(None, env(&[("TRAINYARD_TASKS__MAX_RETRYS", "5")])).unwrap_err();
        assert!(err.to_string().contains("max_retrys"), "{err}");
        let err = Config::load(
            None,
            env(&[
                ("TRAINYARD_HTTP__LISTEN", "nowhere"),
                ("TRAINYARD_TRAINERS__DEVICES", "[\"tpu\"]"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("http.listen") && text.contains("tpu"),
            "{text}"
        );
    }

    #[test]
    fn trusted_proxies_are_address_blocks() {
        let config = Config::load(
            None,
            env(&[(
                "TRAINYARD_HTTP__TRUSTED_PROXIES",
                "[\"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\"]",
            )]),
        )
        .unwrap();
        assert_eq!(config.http.trusted_proxies().unwrap().len(), 3);
        let err = Config::load(
            None,
            env(&[("TRAINYARD_HTTP__TRUSTED_PROXIES", "[\"10.0.0.0/40\"]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("http.trusted_proxies"), "{err}");
    }

    #[test]
    fn notification_settings_are_checked() {
        let config = Config::load(None, env(&[])).unwrap();
        let n = &config.notifications;
        assert!(!n.allow_private, "private addresses are refused by default");
        assert_eq!((n.max_concurrent, n.ca_file.as_str()), (16, ""));
        let err = Config::load(
            None,
            env(&[
                ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", "k"),
                (
                    "TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS",
                    "[\"hooks.example.com:http\", \"ok.example.com:8443\"]",
                ),
                ("TRAINYARD_NOTIFICATIONS__MAX_CONCURRENT", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("hooks.example.com:http") && err.contains("max_concurrent"),
            "{err}"
        );
        assert!(!err.contains("ok.example.com"), "{err}");
    }

    #[test]
    fn bounds_must_leave_room_for_the_largest_body_and_upload() {
        let config = Config::default();
        assert_eq!(config.tasks.max_parameters, 50_000_000);
        assert_eq!(config.http.max_body_bytes_in_flight, 256 << 20);
        let err = Config::load(
            None,
            env(&[
                ("TRAINYARD_HTTP__MAX_BODY_BYTES_IN_FLIGHT", "1000"),
                ("TRAINYARD_DATASETS__MAX_TOTAL_BYTES", "1000"),
                ("TRAINYARD_DATASETS__EXPIRES_S", "-1"),
                ("TRAINYARD_TASKS__MAX_PARAMETERS", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in [
            "http.max_body_bytes_in_flight",
            "datasets.max_total_bytes",
            "datasets.expires_s",
            "tasks.max_parameters",
        ] {
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn a_cluster_node_needs_a_cookie_of_its_own_off_loopback() {
        let load = |extra: &[(&str, &str)]| {
            let mut env = vec![(
                "TRAINYARD_STORE__URL".to_string(),
                "redis://127.0.0.1:6379/0".to_string(),
            )];
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Config::load(None, env)
        };
        let empty = load(&[]).unwrap_err().to_string();
        assert!(empty.contains("node.cookie is empty"), "{empty}");
        assert!(
            load(&[("TRAINYARD_NODE__COOKIE", "change-me")]).is_ok(),
            "loopback may use it"
        );
        let exposed = load(&[
            ("TRAINYARD_NODE__COOKIE", "change-me"),
            ("TRAINYARD_NODE__LISTEN", "\"10.1.2.3:4700\""),
        ])
        .unwrap_err()
        .to_string();
        assert!(exposed.contains("example cookie"), "{exposed}");
        assert!(
            load(&[
                ("TRAINYARD_NODE__COOKIE", "s3cret-of-16-chars"),
                ("TRAINYARD_NODE__LISTEN", "\"10.1.2.3:4700\""),
            ])
            .is_ok()
        );
        let seeds = load(&[
            ("TRAINYARD_NODE__COOKIE", "s3cret"),
            ("TRAINYARD_NODE__SEEDS", "[\"nowhere\"]"),
        ])
        .unwrap_err()
        .to_string();
        assert!(seeds.contains("node.seeds"), "{seeds}");
        assert!(
            load(&[
                ("TRAINYARD_NODE__COOKIE", "s3cret-of-16-chars"),
                ("TRAINYARD_NODE__LISTEN", "\"0.0.0.0:4700\""),
                (
                    "TRAINYARD_NODE__SEEDS",
                    "[\"node-b:4701\", \"[fd00::2]:4701\"]"
                ),
                ("TRAINYARD_NODE__ADVERTISE", "\"node-a.cluster.local:4700\""),
            ])
            .is_ok()
        );
        let unspecified = load(&[
            ("TRAINYARD_NODE__COOKIE", "s3cret-of-16-chars"),
            ("TRAINYARD_NODE__ADVERTISE", "\"0.0.0.0:4700\""),
        ])
        .unwrap_err()
        .to_string();
        assert!(unspecified.contains("node.advertise"), "{unspecified}");
    }

    fn cluster_node(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env = vec![(
            "TRAINYARD_STORE__URL".to_string(),
            "redis://127.0.0.1:6379/0".to_string(),
        )];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::load(None, env)
    }

    #[test]
    fn off_loopback_a_cookie_needs_16_characters() {
        let short = cluster_node(&[
            ("TRAINYARD_NODE__COOKIE", "s3cret-15-chars"),
            ("TRAINYARD_NODE__LISTEN", "\"10.1.2.3:4700\""),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            short.contains("node.cookie is 15 characters long") && short.contains("at least 16"),
            "{short}"
        );
        assert!(
            cluster_node(&[
                ("TRAINYARD_NODE__COOKIE", "s3cret-16-chars!"),
                ("TRAINYARD_NODE__LISTEN", "\"0.0.0.0:4700\""),
            ])
            .is_ok()
        );
        assert!(
            cluster_node(&[("TRAINYARD_NODE__COOKIE", "short")]).is_ok(),
            "loopback may use a short one"
        );
    }

    #[test]
    fn tls_keys_go_together() {
        let text = |extra: &[(&str, &str)]| {
            cluster_node(&[&[("TRAINYARD_NODE__COOKIE", "c")], extra].concat())
                .unwrap_err()
                .to_string()
        };
        assert!(text(&[("TRAINYARD_HTTP__TLS_CERT", "c.pem")]).contains("http.tls_cert"));
        assert!(text(&[("TRAINYARD_NODE__TLS_CA", "ca.pem")]).contains("node.tls_cert"));
        assert!(text(&[("TRAINYARD_STORE__TLS_CA", "ca.pem")]).contains("rediss://"));
        assert!(
            cluster_node(&[
                ("TRAINYARD_NODE__COOKIE", "c"),
                ("TRAINYARD_STORE__URL", "rediss://127.0.0.1:6379/0"),
                ("TRAINYARD_STORE__TLS_CA", "ca.pem"),
            ])
            .is_ok()
        );
    }
}
