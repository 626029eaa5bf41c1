//! Who may call what, and from where: bearer tokens with roles, and the checks that keep a web
//! page on another site from using a node through its visitor's browser.
//!
//! Every request to a route that is not a probe or the metrics passes [`guard`], in this order:
//! 1. **Host** (DNS rebinding): the `Host` header must be an IP literal, `localhost`, this
//!    machine's host name or one of `[http] allowed_hosts`.
//! 2. **Origin** (cross-site requests): a request that changes state (any method but GET, HEAD
//!    and OPTIONS) with an `Origin` header must come from the node's own origin (the `Host` it
//!    was sent to) or one of `[http] allowed_origins`. Clients other than browsers send none.
//! 3. **Token**: when tokens are configured, `Authorization: Bearer <token>` (the scheme in any
//!    case) must name one, and its [`Role`] must cover the route's (401 without, 403 below).
//!    Event streams also take `?token=`, since a browser's `EventSource` cannot send headers.
//!
//! Tokens are kept as SHA-256 digests (the config may give only the digest) and compared in
//! constant time: the given token is hashed, so its length leaks nothing either.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::Filter;
use warp::http::{Method, StatusCode};

use super::ApiError;
use super::routes::Route;
use crate::config::HttpSection;
pub use crate::config::{Role, parse_sha256};

/// One accepted token: its name (for logs), its role, and the SHA-256 of its value.
#[derive(Debug, Clone)]
pub struct Token {
    pub name: Arc<str>,
    pub role: Role,
    pub sha256: [u8; 32],
}

impl Token {
    pub fn new(name: &str, role: Role, secret: &str) -> Token {
        Token {
            name: name.into(),
            role,
            sha256: Sha256::digest(secret.as_bytes()).into(),
        }
    }
}

/// How the edge checks requests.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Accepted tokens; none: every route is open (loopback, or `allow_unauthenticated`).
    pub tokens: Vec<Token>,
    /// Origins (`https://panel.example.com`) whose pages may change state, besides the node's.
    pub allowed_origins: Vec<String>,
    /// Host names the node answers to, besides IP literals, `localhost` and the machine's name;
    /// `*`: any.
    pub allowed_hosts: Vec<String>,
}

impl AuthSettings {
    /// The edge's checks, from a valid `[http]` section.
    pub fn from_section(http: &HttpSection) -> AuthSettings {
        let mut tokens: Vec<Token> = http
            .tokens
            .iter()
            .filter_map(|entry| match (&entry.token, &entry.sha256) {
                (Some(token), _) => Some(Token::new(&entry.name, entry.role, token)),
                (None, Some(hex)) => Some(Token {
                    name: entry.name.as_str().into(),
                    role: entry.role,
                    sha256: parse_sha256(hex)?,
                }),
                (None, None) => None,
            })
            .collect();
        if !http.token.is_empty() {
            tokens.push(Token::new("token", Role::Admin, &http.token));
        }
        AuthSettings {
            tokens,
            allowed_origins: http.allowed_origins.clone(),
            allowed_hosts: http.allowed_hosts.clone(),
        }
    }
}

/// The token a request came with, once accepted.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
}

impl AuthSettings {
    /// The token whose digest matches `given`, compared with every token in constant time.
    fn find(&self, given: &str) -> Option<&Token> {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.sha256.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        found
    }

    fn host_allowed(&self, host: &str, machine: &str) -> bool {
        let name = host_name(host);
        if name.is_empty() {
            return false;
        }
        name.parse::<std::net::IpAddr>().is_ok()
            || (name.starts_with('[') && name.ends_with(']'))
            || name.eq_ignore_ascii_case("localhost")
            || (!machine.is_empty() && name.eq_ignore_ascii_case(machine))
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(name))
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/');
        // `scheme://authority`: the node's own when the authority is the Host it was sent to.
        let own = origin
            .split_once("://")
            .is_some_and(|(_, authority)| host.is_some_and(|h| authority.eq_ignore_ascii_case(h)));
        own || self
            .allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// The host part of a `Host` header (`name:port`, `[::1]:port`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// This machine's host name, for the `Host` check (empty when it cannot be read).
pub fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// The role a route needs, by its label: the route table's (`routes`). A label of no route
/// ("other") needs only read: the answer is 404 or 405 whatever the token.
pub fn required_role(label: &str) -> Role {
    Route::all()
        .find(|route| route.label() == label)
        .map_or(Role::Read, Route::role)
}

/// Whether a route is an event stream, the only kind that takes `?token=`.
fn is_event_stream(label: &str) -> bool {
    label.ends_with("/events")
}

/// The bearer token of an `Authorization` header, with the scheme in any case.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `token` parameter of a query string, percent-decoded.
fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// The headers the checks read (only these are taken from a request, not a copy of them all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

/// Checks one request (see the module's doc); answers who called, when tokens are set.
pub fn check(
    settings: &AuthSettings,
    machine: &str,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: Headers<'_>,
) -> Result<Option<Caller>, ApiError> {
    let host = headers.host;
    if let Some(host) = host
        && !settings.host_allowed(host, machine)
    {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "Host {host:?} is not a name of this node: use an IP address, or add the name \
                 to [http] allowed_hosts"
            ),
        ));
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state
        && let Some(origin) = headers.origin
        && !settings.origin_allowed(origin, host)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "a page from {origin:?} may not change this node's state; add the origin \
                 to [http] allowed_origins if it is yours"
            ),
        ));
    }
    if settings.tokens.is_empty() {
        return Ok(None);
    }
    let route = Route::find(method, path);
    let label = route.map_or(super::routes::OTHER, Route::label);
    let from_query = is_event_stream(label)
        .then(|| query.and_then(query_token))
        .flatten();
    let given = headers
        .authorization
        .and_then(bearer)
        .map(str::to_string)
        .or(from_query);
    let Some(token) = given.as_deref().and_then(|given| settings.find(given)) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        ));
    };
    let needed = route.map_or(Role::Read, Route::role);
    if token.role < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{label} needs the {} role; token {:?} has the {} role",
                needed.name(),
                token.name,
                token.role.name()
            ),
        ));
    }
    if needed == Role::Admin {
        tracing::info!(target: "trainyard::audit", token = %token.name, route = label, %path, "admin action");
    }
    Ok(Some(Caller {
        name: token.name.clone(),
        role: token.role,
    }))
}

/// A filter that passes a request [`check`] accepts and rejects the rest with its error.
pub fn guard(
    settings: Arc<AuthSettings>,
) -> impl Filter<Extract = (Option<Caller>,), Error = warp::Rejection> + Clone {
    let machine: Arc<str> = machine_name().into();
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("host"))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("authorization"))
        .and_then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  host: Option<String>,
                  origin: Option<String>,
                  authorization: Option<String>| {
                let (settings, machine) = (settings.clone(), machine.clone());
                async move {
                    let headers = Headers {
                        host: host.as_deref(),
                        origin: origin.as_deref(),
                        authorization: authorization.as_deref(),
                    };
                    let query = Some(query.as_str()).filter(|q| !q.is_empty());
                    check(&settings, &machine, &method, path.as_str(), query, headers)
                        .map_err(warp::reject::custom)
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            tokens: vec![
                Token::new("dash", Role::Read, "read-token-0123456789"),
                Token::new("ci", Role::Submit, "submit-token-0123456789"),
                Token {
                    name: "ops".into(),
                    role: Role::Admin,
                    // sha256("admin-token-0123456789"), as `printf %s ... | sha256sum` prints it.
                    sha256: parse_sha256(
                        "ca8d40e6ce4716b552f1c69863335b502f2afb57ffae171d6675fd56d91ca5b2",
                    )
                    .unwrap(),
                },
            ],
            allowed_origins: vec!["https://panel.example.com".into()],
            allowed_hosts: vec!["trainyard.internal".into()],
        }
    }

    fn request(
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<Option<Caller>, ApiError> {
        let header = |wanted: &str| {
            headers
                .iter()
                .find(|(name, _)| *name == wanted)
                .map(|(_, value)| *value)
        };
        let headers = Headers {
            host: header("host"),
            origin: header("origin"),
            authorization: header("authorization"),
        };
        check(&settings(), "box1", &method, path, query, headers)
    }

    fn code(result: Result<Option<Caller>, ApiError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn roles_cover_the_routes_of_the_roles_below() {
        let id = "/task/0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d";
        let cases = [
            (Method::GET, format!("{id}/status"), Role::Read),
            (Method::GET, format!("{id}/events"), Role::Read),
            (Method::GET, "/schedules".into(), Role::Read),
            (Method::POST, "/train/mlp/async".into(), Role::Submit),
            (Method::POST, format!("{id}/cancel"), Role::Submit),
            (Method::POST, "/datasets".into(), Role::Submit),
            (Method::POST, "/models/x/predict".into(), Role::Submit),
            (Method::DELETE, "/queue".into(), Role::Admin),
            (Method::POST, "/cluster/nodes/a/drain".into(), Role::Admin),
            (Method::POST, "/schedules".into(), Role::Admin),
            (Method::DELETE, "/schedules/nightly".into(), Role::Admin),
            (Method::POST, "/schedules/nightly/pause".into(), Role::Admin),
            // No such route: any token may learn that (404).
            (Method::POST, "/nothing/here".into(), Role::Read),
        ];
        for (method, path, role) in cases {
            let label = super::super::route_label(&method, &path);
            assert_eq!(required_role(label), role, "{method} {path}");
        }
    }

    #[test]
    fn a_token_below_the_route_s_role_is_forbidden_and_told_which_it_needs() {
        let bearer = |t: &str| format!("Bearer {t}");
        let read = bearer("read-token-0123456789");
        assert_eq!(
            code(request(
                Method::GET,
                "/tasks",
                None,
                &[("authorization", &read)]
            )),
            "ok"
        );
        let refused = request(
            Method::POST,
            "/train/mlp/async",
            None,
            &[("authorization", &read)],
        )
        .unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused.message.contains("submit role"),
            "{}",
            refused.message
        );
        let submit = bearer("submit-token-0123456789");
        assert_eq!(
            code(request(
                Method::POST,
                "/train/mlp/async",
                None,
                &[("authorization", &submit)]
            )),
            "ok"
        );
        assert_eq!(
            code(request(
                Method::DELETE,
                "/queue",
                None,
                &[("authorization", &submit)]
            )),
            "forbidden"
        );
    }

    #[test]
    fn tokens_given_as_digests_are_accepted_and_the_scheme_is_any_case() {
        for header in [
            "Bearer admin-token-0123456789",
            "bearer admin-token-0123456789",
            "BEARER  admin-token-0123456789 ",
        ] {
            let caller = request(Method::DELETE, "/queue", None, &[("authorization", header)])
                .unwrap()
                .unwrap();
            assert_eq!(
                (&*caller.name, caller.role),
                ("ops", Role::Admin),
                "{header}"
            );
        }
        for header in [
            "Basic admin-token-0123456789",
            "Bearer admin-token-012345678",
            "",
        ] {
            assert_eq!(
                code(request(
                    Method::GET,
                    "/tasks",
                    None,
                    &[("authorization", header)]
                )),
                "unauthorized",
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_query_token_is_taken_by_event_streams_only() {
        let query = Some("token=read-token-0123456789");
        assert_eq!(code(request(Method::GET, "/events", query, &[])), "ok");
        assert_eq!(
            code(request(Method::GET, "/task/x/events", query, &[])),
            "ok"
        );
        assert_eq!(
            code(request(Method::GET, "/tasks", query, &[])),
            "unauthorized"
        );
    }

    #[test]
    fn hosts_must_be_ip_literals_or_known_names() {
        let get = |host: &str| {
            code(request(
                Method::GET,
                "/tasks",
                None,
                &[
                    ("host", host),
                    ("authorization", "Bearer read-token-0123456789"),
                ],
            ))
        };
        for host in [
            "127.0.0.1:5000",
            "[::1]:5000",
            "10.1.2.3",
            "localhost:5000",
            "box1:5000",
            "trainyard.internal",
            "TRAINYARD.internal:80",
        ] {
            assert_eq!(get(host), "ok", "{host}");
        }
        for host in [
            "attacker.example:5000",
            "localhost.attacker.example",
            "",
            "box1.evil",
        ] {
            assert_eq!(get(host), "host_not_allowed", "{host}");
        }
    }

    #[test]
    fn pages_of_other_origins_may_not_change_state() {
        let auth = ("authorization", "Bearer admin-token-0123456789");
        let post = |origin: &str| {
            code(request(
                Method::POST,
                "/task/x/cancel",
                None,
                &[("host", "127.0.0.1:5000"), ("origin", origin), auth],
            ))
        };
        assert_eq!(post("http://127.0.0.1:5000"), "ok");
        assert_eq!(post("https://panel.example.com"), "ok");
        for origin in ["http://attacker.example", "null", "http://127.0.0.1:5001"] {
            assert_eq!(post(origin), "origin_not_allowed", "{origin}");
        }
        // Reads are not refused for their origin: a browser keeps their answers from the page.
        let read = code(request(
            Method::GET,
            "/tasks",
            None,
            &[
                ("host", "127.0.0.1:5000"),
                ("origin", "http://attacker.example"),
                auth,
            ],
        ));
        assert_eq!(read, "ok");
    }
}
