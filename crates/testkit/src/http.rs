//! A small JSON HTTP client for talking to nodes.

use std::time::Duration;

use serde_json::Value;

/// An HTTP client that returns error statuses as answers and gives up after `timeout`.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// An answer's status and JSON body (a body that is not JSON as a string); None when the
/// request failed.
pub fn read_json(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Option<(u16, Value)> {
    let response = response.ok()?;
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}
