//! Following a task to its end over its event stream (`GET /task/{id}/events`): `submit
//! --wait`, `submit --follow` and `status --follow`; [`read_stream`], the server-sent event
//! reader that `sweep --follow` shares.

use std::io::BufRead;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::tasks::print_result;
use super::{Client, ClientError, http::transport};

/// Most times `follow` reconnects to a stream that dropped before the task ended.
const MAX_RECONNECTS: u32 = 20;

/// Follows task `id` until it ends (with a progress bar if `bar`), then prints its result and
/// fails as the task did: FAILURE is [`ClientError::TaskFailed`], REVOKED
/// [`ClientError::TaskRevoked`]. A dropped connection resumes with `Last-Event-ID`.
pub fn follow(client: &Client, id: &str, bar: bool) -> Result<(), ClientError> {
    let bar = if bar {
        let bar = ProgressBar::new(100);
        // The template is a literal that indicatif accepts.
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos:>3}% {msg}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut last_id: Option<String> = None;
    let mut reconnects = 0;
    while !read_events(client, id, &mut last_id, &bar)? {
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            return Err(ClientError::Unreachable {
                url: client.url(&format!("/task/{id}/events")),
                reason: "the event stream kept dropping".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
    let result = client.get(&format!("/task/{id}/result"))?;
    print_result(client, &result);
    match result["state"].as_str() {
        Some("FAILURE") => Err(ClientError::TaskFailed {
            id: id.to_string(),
            reason: result["error"]["message"]
                .as_str()
                .or(result["error"]["code"].as_str())
                .unwrap_or("no reason given")
                .to_string(),
        }),
        Some("REVOKED") => Err(ClientError::TaskRevoked { id: id.to_string() }),
        _ => Ok(()),
    }
}

/// Reads task `id`'s events into `bar` until the stream ends; true if the task ended. A
/// refusal (unknown task, bad token) is an error; a dropped connection is `false`.
fn read_events(
    client: &Client,
    id: &str,
    last_id: &mut Option<String>,
    bar: &ProgressBar,
) -> Result<bool, ClientError> {
    read_stream(client, &format!("/task/{id}/events"), last_id, |event| {
        let state = event["state"].as_str().unwrap_or("");
        if let Some(percent) = event["progress"]["percent"].as_f64() {
            bar.set_position(percent as u64);
        }
        bar.set_message(format!(
            "{state} {}",
            event["progress"]["message"].as_str().unwrap_or("")
        ));
        Ok(matches!(state, "SUCCESS" | "FAILURE" | "REVOKED"))
    })
}

/// Reads the server-sent events of `path` (after `last_id`, which it keeps up to date),
/// handing each event's JSON data to `on_event` until it answers true (the end: `Ok(true)`)
/// or the stream ends (`Ok(false)`, to reconnect). A refusal (unknown id, bad token) and an
/// error of `on_event` are errors; a dropped connection is `Ok(false)`.
pub(super) fn read_stream(
    client: &Client,
    path: &str,
    last_id: &mut Option<String>,
    mut on_event: impl FnMut(&Value) -> Result<bool, ClientError>,
) -> Result<bool, ClientError> {
    let url = client.url(path);
    let agent = client.agent(Some(Duration::from_secs(30)), None);
    let mut request = agent.get(&url).header("accept", "text/event-stream");
    if let Some(auth) = client.authorization() {
        request = request.header("authorization", auth);
    }
    if let Some(last) = last_id.as_deref() {
        request = request.header("last-event-id", last);
    }
    let response = match request.call() {
        Ok(response) => response,
        // Never connected: the server is not there.
        Err(e) if last_id.is_none() => return Err(transport(&url, e)),
        Err(_) => return Ok(false),
    };
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let value: Value = response.into_body().read_json().unwrap_or(Value::Null);
        return Err(ClientError::refusal(status, &value));
    }
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let (mut event_id, mut data) = (None, String::new());
    for line in reader.lines() {
        let Ok(line) = line else { return Ok(false) };
        if let Some(value) = line.strip_prefix("id:") {
            event_id = Some(value.trim().to_string());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        } else if line.is_empty() && !data.is_empty() {
            let event: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            data.clear();
            if let Some(id) = event_id.take() {
                *last_id = Some(id);
            }
            if on_event(&event)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
