//! [`ClientError`]: every way a client verb fails, and the exit code each one gives.

use thiserror::Error;

/// Why a client verb failed. [`ClientError::exit_code`] is the process's exit status, as
/// `trainyard --help` and README list them.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server refused the request (a 4xx answer): exit 2.
    #[error("{status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server failed (a 5xx answer, such as 503 while it stops): exit 4.
    #[error("{status} {code}: {message}")]
    Unavailable {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection refused, unknown host, TLS failure, timeout: exit 4.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// An answer that is not the API's JSON (a proxy's error page): exit 4.
    #[error("{url} did not answer JSON: {reason}")]
    NotJson { url: String, reason: String },
    /// A local file that cannot be read or parsed: exit 2.
    #[error("cannot read {path}: {reason}")]
    LocalFile { path: String, reason: String },
    /// A flag's value the client itself refuses (a row that is not numbers, a bad URL): exit 2.
    #[error("{0}")]
    Usage(String),
    /// The task ended as FAILURE (`--wait`, `--follow`): exit 1.
    #[error("task {id} ended as FAILURE: {reason}")]
    TaskFailed { id: String, reason: String },
    /// The task ended as REVOKED (`--wait`, `--follow`): exit 3.
    #[error("task {id} was revoked")]
    TaskRevoked { id: String },
    /// The sweep was cancelled (`sweep --follow`, `sweeps follow`): exit 3.
    #[error("sweep {id} was cancelled")]
    SweepRevoked { id: String },
    /// The sweep ended without one successful trial (`sweep --follow`, `sweeps follow`):
    /// exit 1.
    #[error("sweep {id} ended without a successful trial")]
    SweepFailed { id: String },
    /// `trainyard health` found the cluster unhealthy: exit 4.
    #[error("the cluster is unhealthy: {0}")]
    Unhealthy(String),
}

/// The exit codes, as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the task ended in FAILURE (submit --wait/--follow, status --follow), a followed sweep
     ended without a successful trial, or a local command failed
  2  bad request: a usage error, a 4xx answer, an unreadable local file
  3  the task was REVOKED (submit --wait/--follow, status --follow), or the followed sweep
     was cancelled
  4  the server is unreachable or unavailable: connection error, timeout, 5xx, unhealthy";

impl ClientError {
    /// The process's exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::TaskFailed { .. } | ClientError::SweepFailed { .. } => 1,
            ClientError::Refused { .. } | ClientError::LocalFile { .. } | ClientError::Usage(_) => {
                2
            }
            ClientError::TaskRevoked { .. } | ClientError::SweepRevoked { .. } => 3,
            ClientError::Unavailable { .. }
            | ClientError::Unreachable { .. }
            | ClientError::NotJson { .. }
            | ClientError::Unhealthy(_) => 4,
        }
    }

    /// The error of an answer with `status` (4xx or 5xx) and the API's error body `answer`;
    /// an answer that lists its `problems` (a 422 of `POST /sweeps`) gives one per line.
    pub fn refusal(status: u16, answer: &serde_json::Value) -> ClientError {
        let (code, message) = match serde_json::from_value::<crate::api::ErrorBody>(answer.clone())
        {
            Ok(body) => match body.error.extra.get("problems").and_then(|p| p.as_array()) {
                Some(problems) if !problems.is_empty() => {
                    let lines: Vec<String> = problems
                        .iter()
                        .map(|p| format!("\n  - {}", p.as_str().unwrap_or_default()))
                        .collect();
                    let n = problems.len();
                    let s = if n == 1 { "" } else { "s" };
                    (
                        body.error.code,
                        format!("{n} problem{s}:{}", lines.concat()),
                    )
                }
                _ => (body.error.code, body.error.message),
            },
            Err(_) => ("error".to_string(), answer.to_string()),
        };
        if status >= 500 {
            ClientError::Unavailable {
                status,
                code,
                message,
            }
        } else {
            ClientError::Refused {
                status,
                code,
                message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_their_exit_codes() {
        let body = serde_json::json!({"success": false,
            "error": {"code": "task_not_found", "message": "task 1 not found"}});
        let refused = ClientError::refusal(404, &body);
        assert_eq!(refused.to_string(), "404 task_not_found: task 1 not found");
        assert_eq!(refused.exit_code(), 2);
        assert_eq!(ClientError::refusal(503, &body).exit_code(), 4);
        assert_eq!(
            ClientError::refusal(502, &serde_json::Value::Null).exit_code(),
            4
        );
        let id = "t".to_string();
        assert_eq!(
            ClientError::TaskFailed {
                id: id.clone(),
                reason: "time_limit".into()
            }
            .exit_code(),
            1
        );
        assert_eq!(ClientError::TaskRevoked { id }.exit_code(), 3);
        let id = "s".to_string();
        assert_eq!(ClientError::SweepRevoked { id: id.clone() }.exit_code(), 3);
        assert_eq!(ClientError::SweepFailed { id }.exit_code(), 1);
    }

    #[test]
    fn listed_problems_are_shown_one_per_line() {
        let body = serde_json::json!({"success": false, "error": {"code": "invalid_sweep",
            "message": "a; b", "problems": ["space.x: unknown parameter", "trials must be 1"]}});
        let refused = ClientError::refusal(422, &body);
        assert_eq!(
            refused.to_string(),
            "422 invalid_sweep: 2 problems:\n  - space.x: unknown parameter\n  - trials must be 1"
        );
        assert_eq!(refused.exit_code(), 2);
    }
}
