//! The load generator: keep-alive HTTP/1.1 connections driven from one thread, as wrk does,
//! each sending requests written out in full and reading just enough of each answer to find
//! its end. The load generator shares the machine's cores with what it measures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cluster::submission;
use crate::report::{percentile, round};

/// Submits `n` tasks (tiny trainings on `dataset`, or no-ops: see [`submission`]) from
/// `clients` keep-alive connections, round robin over `urls`; returns
/// the ids. All connections are driven from one thread, as wrk does (see `status_load`), and
/// each sends the same request bytes, built once: the load generator shares the 2 cores with
/// what it measures.
pub fn submit_all(
    urls: &[String],
    dataset: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<String>> {
    let (path, body) = submission(dataset);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let per_client: Vec<anyhow::Result<Vec<String>>> = runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for c in 0..clients.min(n.max(1)) {
            let addr = host_port(&urls[c % urls.len()])?.to_string();
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let count = (c..n).step_by(clients).count();
            set.spawn(async move {
                let mut connection = Connection::open(&addr).await?;
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    let (status, answer) = connection.exchange(request.as_bytes()).await?;
                    #[derive(serde::Deserialize)]
                    struct Accepted<'a> {
                        task_id: &'a str,
                    }
                    match serde_json::from_slice::<Accepted>(answer) {
                        Ok(accepted) if status == 202 => ids.push(accepted.task_id.to_string()),
                        _ => bail!(
                            "submit answered {status}: {}",
                            String::from_utf8_lossy(answer)
                        ),
                    }
                }
                Ok(ids)
            });
        }
        anyhow::Ok(set.join_all().await)
    })?;
    let mut ids = Vec::with_capacity(n);
    for client in per_client {
        ids.extend(client?);
    }
    Ok(ids)
}

/// `host:port` of an `http://` address.
pub fn host_port(url: &str) -> anyhow::Result<&str> {
    url.strip_prefix("http://")
        .with_context(|| format!("not an http:// address: {url}"))
}

/// A keep-alive HTTP/1.1 connection of the load generator, which sends requests written out
/// in full and reads just enough of each answer to find its end.
pub struct Connection {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: &str) -> std::io::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and returns the answer's status and body.
    pub async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
            if let Some((status, body)) = whole_response(&self.buf) {
                return Ok((status, &self.buf[body]));
            }
        }
    }
}

/// `GET /task/{id}/status` from `connections` keep-alive connections for `duration`, all driven
/// from one thread, as wrk does: the load generator shares the 2 cores with the node and Redis,
/// and a thread per connection would take much of them.
pub fn status_load(
    url: &str,
    ids: &[String],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    if ids.is_empty() {
        bail!("no task ids to ask for");
    }
    let addr = host_port(url)?.to_string();
    let requests: Arc<[String]> = ids
        .iter()
        .map(|id| format!("GET /task/{id}/status HTTP/1.1\r\nHost: {addr}\r\n\r\n"))
        .collect();
    http_load(&addr, requests, connections, duration)
}

/// `requests` (whole HTTP/1.1 requests, taken in turn) from `connections` keep-alive
/// connections to `addr` for `duration`; every answer but 200 is an error.
pub fn http_load(
    addr: &str,
    requests: Arc<[String]>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    let addr = addr.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + duration;
    let per_connection = runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for c in 0..connections {
            let (addr, requests) = (addr.clone(), requests.clone());
            set.spawn(status_connection(addr, requests, c, connections, deadline));
        }
        set.join_all().await
    });
    let errors: usize = per_connection.iter().map(|(_, e)| e).sum();
    let mut all: Vec<f64> = per_connection
        .into_iter()
        .flat_map(|(l, _)| l)
        .map(|us| us as f64 / 1000.0)
        .collect();
    all.sort_by(f64::total_cmp);
    Ok(json!({
        "connections": connections,
        "seconds": duration.as_secs_f64(),
        "requests_per_s": round(all.len() as f64 / duration.as_secs_f64(), 0),
        "p50_ms": round(percentile(&all, 0.50), 3),
        "p99_ms": round(percentile(&all, 0.99), 3),
        "errors": errors,
    }))
}

/// One keep-alive connection of the status load: request `c`, `c + step`, ... of `requests`,
/// one at a time, until `deadline`. Returns each answer's latency (µs) and the error count
/// (an error also reconnects).
async fn status_connection(
    addr: String,
    requests: Arc<[String]>,
    c: usize,
    step: usize,
    deadline: Instant,
) -> (Vec<u32>, usize) {
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    let mut i = c;
    'connect: while Instant::now() < deadline {
        let Ok(mut connection) = Connection::open(&addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while Instant::now() < deadline {
            let request = &requests[i % requests.len()];
            i += step;
            let sent = Instant::now();
            match connection.exchange(request.as_bytes()).await {
                Ok((200, _)) => latencies_us.push(sent.elapsed().as_micros() as u32),
                Ok(_) => errors += 1,
                Err(_) => {
                    errors += 1;
                    continue 'connect;
                }
            }
        }
    }
    (latencies_us, errors)
}

/// The status code of the HTTP/1.1 response in `buf`, and where its body lies, once all of it
/// (head and `content-length` bytes of body) has arrived.
pub fn whole_response(buf: &[u8]) -> Option<(u16, std::ops::Range<usize>)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some((status, head_end..head_end + length))
}

/// The store's claim cost (mean `claim` duration from the node's own metrics) and the dispatch
/// rate of the first tasks, with `depth` tasks queued.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_whole_once_their_body_has_arrived() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 7\r\n\r\n";
        let mut buf = head.to_vec();
        assert_eq!(whole_response(&buf[..10]), None);
        assert_eq!(whole_response(&buf), None);
        buf.extend_from_slice(b"{\"a\":1");
        assert_eq!(whole_response(&buf), None);
        buf.push(b'}');
        assert_eq!(
            whole_response(&buf),
            Some((200, head.len()..head.len() + 7))
        );
        assert_eq!(
            whole_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            Some((404, 45..45))
        );
    }
}
