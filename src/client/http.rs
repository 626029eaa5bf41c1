//! [`Client`]: the connection settings every client verb shares (`--server`, `--token`,
//! `--ca-file`, `--json`) and its requests, which turn every answer into JSON or a
//! [`ClientError`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::ClientError;

/// The server the client verbs ask when neither `--server` nor `TRAINYARD_SERVER` names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:5000";

/// The options of every client verb (global: before or after the verb).
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The node to ask: http://HOST:PORT or https://HOST:PORT (a trailing / is fine).
    #[arg(
        long,
        global = true,
        env = "TRAINYARD_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL",
        help_heading = "Client options"
    )]
    pub server: String,
    /// Bearer token for a node that has [http] tokens (better given in the environment than
    /// on the command line, where `ps` shows it; never printed).
    #[arg(
        long,
        global = true,
        env = "TRAINYARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Client options"
    )]
    pub token: Option<String>,
    /// PEM file of the CA(s) to trust for an https:// --server (instead of the built-in web
    /// roots).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Client options"
    )]
    pub ca_file: Option<PathBuf>,
    /// Print the server's JSON answer, pretty printed, instead of text and tables.
    #[arg(long, global = true, help_heading = "Client options")]
    pub json: bool,
}

/// A body to send.
pub enum Body<'a> {
    None,
    Json(Value),
    /// Bytes with their content type.
    Raw(&'a str, Vec<u8>),
}

/// The server to ask and how: its base URL (without a trailing `/`), the token, the TLS roots.
pub struct Client {
    base: String,
    token: Option<String>,
    tls: ureq::tls::TlsConfig,
    /// `--json`: print the answers as JSON.
    pub json: bool,
}

impl Client {
    /// A client from the verbs' options; an unreadable `--ca-file` is an error.
    pub fn new(opts: &ClientOpts) -> Result<Client, ClientError> {
        let tls = match &opts.ca_file {
            Some(path) => trust(path)?,
            None => ureq::tls::TlsConfig::default(),
        };
        let server = opts.server.trim();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "--server {server:?} must start with http:// or https://"
            )));
        }
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            token: opts.token.clone().filter(|t| !t.is_empty()),
            tls,
            json: opts.json,
        })
    }

    /// The URL of `path` (which starts with `/`) on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An agent that answers every status (the caller reads errors): 10 s to connect, then
    /// `response` for the answer's head and `overall` for the whole request.
    pub fn agent(&self, response: Option<Duration>, overall: Option<Duration>) -> ureq::Agent {
        ureq::Agent::config_builder()
            .tls_config(self.tls.clone())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(response)
            .timeout_global(overall)
            .build()
            .into()
    }

    /// The `Authorization` header's value, if a token is set.
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// Sends a request; the answer's status and JSON, whatever the status.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<(u16, Value), ClientError> {
        let url = self.url(path);
        let agent = self.agent(None, Some(Duration::from_secs(600)));
        let auth = self.authorization();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("authorization", auth.as_str()));
        }
        let response = match method {
            "GET" | "DELETE" => {
                let mut request = if method == "GET" {
                    agent.get(&url)
                } else {
                    agent.delete(&url)
                };
                for (k, v) in &all {
                    request = request.header(*k, *v);
                }
                request.call()
            }
            _ => {
                let mut request = if method == "PUT" {
                    agent.put(&url)
                } else {
                    agent.post(&url)
                };
                for (k, v) in &all {
                    request = request.header(*k, *v);
                }
                match body {
                    Body::None => request.send_empty(),
                    Body::Json(value) => request.send_json(value),
                    Body::Raw(content_type, bytes) => request
                        .header("content-type", content_type)
                        .send(&bytes[..]),
                }
            }
        }
        .map_err(|e| transport(&url, e))?;
        let status = response.status().as_u16();
        let value: Value = response
            .into_body()
            .read_json()
            .map_err(|e| ClientError::NotJson {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok((status, value))
    }

    /// Sends a request and returns the JSON answer; a 4xx or 5xx is an error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Value, ClientError> {
        let (status, value) = self.send(method, path, headers, body)?;
        if !(200..300).contains(&status) {
            return Err(ClientError::refusal(status, &value));
        }
        Ok(value)
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call("GET", path, &[], Body::None)
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.call("DELETE", path, &[], Body::None)
    }

    pub fn post(&self, path: &str) -> Result<Value, ClientError> {
        self.call("POST", path, &[], Body::None)
    }

    /// POSTs `body` (one of the API's request types) as JSON.
    pub fn post_json<T: Serialize>(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &T,
    ) -> Result<Value, ClientError> {
        let value = serde_json::to_value(body).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.call("POST", path, headers, Body::Json(value))
    }

    /// Prints `value` as pretty JSON.
    pub fn print_json(value: &Value) {
        // A Value always serializes.
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }
}

/// The error of a request that got no answer.
pub fn transport(url: &str, e: ureq::Error) -> ClientError {
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            ClientError::Usage(format!("bad --server URL {url}: {e}"))
        }
        e => ClientError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        },
    }
}

/// The CA certificates of the PEM file at `path`, as the only roots to trust.
fn trust(path: &std::path::Path) -> Result<ureq::tls::TlsConfig, ClientError> {
    let local = |reason: String| ClientError::LocalFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| local(e.to_string()))?;
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| local(format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(local("it holds no PEM certificate".into()));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::from(certs))
        .build())
}
