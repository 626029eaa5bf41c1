//! Cluster addresses as people write them: `host:port`, where the host is an IP address
//! (`10.0.0.5`, `[fd00::5]`) or a name (`node-b`, `localhost`) resolved at every dial, so that a
//! container that restarts with a new IP address is found again.
//!
//! A node *listens* on one address and *advertises* another: the one its peers dial, which it
//! announces to them (ractor_cluster's transitive connections) and in the store. A node listening
//! on an unspecified address (`0.0.0.0:4700`) advertises its host name, never `0.0.0.0`.

use std::net::{IpAddr, SocketAddr};

/// An address split into host and port (`[::1]:4700` gives `::1` and 4700), or why not.
pub fn split(address: &str) -> Result<(&str, u16), String> {
    let problem = || format!("{address:?} is not an address like node-b:4701 or 10.0.0.5:4701");
    let (host, port) = address.rsplit_once(':').ok_or_else(problem)?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| problem())?;
            v6
        }
        // An IPv6 address must be in brackets; a name has no colon.
        None if host.contains(':') => return Err(problem()),
        None => host,
    };
    let port = port.parse::<u16>().map_err(|_| problem())?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    if !name_ok {
        return Err(problem());
    }
    Ok((host, port))
}

/// Whether `host` (an IP address or a name) surely means this machine only.
pub fn is_loopback_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether `host` is an unspecified IP address (`0.0.0.0`, `::`): one to listen on, never one
/// to dial.
pub fn is_unspecified_host(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Problems of an address to dial (a seed, an advertised address).
pub fn dialable(address: &str) -> Result<(), String> {
    let (host, port) = split(address)?;
    if is_unspecified_host(host) {
        return Err(format!(
            "{address:?} is not an address peers can dial ({host} is any address)"
        ));
    }
    if port == 0 {
        return Err(format!("{address:?} has no port"));
    }
    Ok(())
}

/// The address a node advertises: `configured` when set; else `listen` as written when its host
/// is concrete; else this machine's host name. The port is the one bound (`listen` may ask for
/// port 0) unless `configured` names one.
pub fn advertised(configured: &str, listen: &str, bound: SocketAddr, host_name: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = match split(listen) {
        Ok((host, _)) if !is_unspecified_host(host) => host,
        _ => host_name,
    };
    join(host, bound.port())
}

/// `host:port`, with an IPv6 address in brackets.
pub fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// This machine's host name (the kernel's, as `hostname` prints it), or `localhost`.
pub fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Every socket address `address` resolves to now (a literal gives itself; a name asks the
/// system's resolver, `/etc/hosts` included). Empty when the name does not resolve.
pub async fn resolve(address: &str) -> Vec<SocketAddr> {
    match tokio::net::lookup_host(address).await {
        Ok(addresses) => addresses.collect(),
        Err(e) => {
            tracing::debug!(%address, error = %e, "cannot resolve");
            Vec::new()
        }
    }
}

/// The TLS server name a peer dialled at `address` must show: its IP address or its host name.
pub fn server_name(address: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let (host, _) = split(address)?;
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(rustls::pki_types::ServerName::IpAddress(ip.into())),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} is not a host name: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_split_into_host_and_port() {
        assert_eq!(split("node-b:4701"), Ok(("node-b", 4701)));
        assert_eq!(split("10.0.0.5:4701"), Ok(("10.0.0.5", 4701)));
        assert_eq!(split("[fd00::5]:4701"), Ok(("fd00::5", 4701)));
        assert_eq!(
            split("node-b.cluster.local:1"),
            Ok(("node-b.cluster.local", 1))
        );
        for bad in [
            "node-b",
            ":4701",
            "node-b:",
            "node-b:70000",
            "fd00::5:4701",
            "a b:1",
            "[x]:1",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_never_advertises_an_unspecified_address() {
        let bound: SocketAddr = "0.0.0.0:4700".parse().unwrap();
        assert_eq!(
            advertised("", "0.0.0.0:4700", bound, "node-a"),
            "node-a:4700"
        );
        assert_eq!(advertised("", "[::]:4700", bound, "node-a"), "node-a:4700");
        assert_eq!(advertised("", "node-a:4700", bound, "host"), "node-a:4700");
        assert_eq!(
            advertised("", "127.0.0.1:0", "127.0.0.1:39001".parse().unwrap(), "h"),
            "127.0.0.1:39001"
        );
        assert_eq!(
            advertised("lb.example:9000", "0.0.0.0:4700", bound, "h"),
            "lb.example:9000"
        );
        assert!(dialable("0.0.0.0:4700").is_err());
        assert!(dialable("node-b:4701").is_ok());
    }

    #[test]
    fn peers_dialled_by_name_must_show_that_name() {
        assert!(matches!(
            server_name("node-b:4701"),
            Ok(rustls::pki_types::ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.5:4701"),
            Ok(rustls::pki_types::ServerName::IpAddress(_))
        ));
    }
}
