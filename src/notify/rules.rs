//! Where callbacks may go: allowed hosts and ports, and global addresses only (see the module
//! doc of `notify`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::config::parse_allowed;

/// Where callbacks may go: `[notifications] allowed_hosts` and `allow_private`.
#[derive(Debug, Clone, Default)]
pub struct CallbackRules {
    /// Hosts (`host`, `host:port`, `[v6]:port`) callbacks may go to; none allowed when empty.
    pub allowed_hosts: Vec<String>,
    /// Whether hosts may be (or resolve to) loopback, private, link-local or other non-global
    /// addresses.
    pub allow_private: bool,
}

/// A callback URL that passed [`CallbackRules::check_url`]: where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Lower case, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
}

/// `url` with any `user:password@` replaced by `***@`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_string(),
    }
}

impl CallbackRules {
    /// Checks a callback URL without resolving it: http or https, no credentials, a host and
    /// port allowed, and an IP literal host global unless private addresses are allowed.
    /// Messages never hold the URL's credentials.
    pub fn check_url(&self, url: &str) -> Result<Target, String> {
        let shown = redact(url);
        let uri: warp::http::Uri = url
            .parse()
            .map_err(|e| format!("callback_url {shown:?} is not a URL: {e}"))?;
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(format!("callback_url {shown:?} must be http or https")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("callback_url {shown:?} has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "callback_url {shown:?} must not hold credentials (user:password@); \
                 authenticate with the X-Trainyard-Signature header instead"
            ));
        }
        let host = authority.host().to_ascii_lowercase();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host)
            .to_string();
        if host.is_empty() {
            return Err(format!("callback_url {shown:?} has no host"));
        }
        let port = uri.port_u16().unwrap_or(default_port);
        let allowed_here = self.allowed_hosts.iter().any(|entry| {
            parse_allowed(entry).is_ok_and(|(h, p)| h == host && p.unwrap_or(default_port) == port)
        });
        if !allowed_here {
            let portless = self
                .allowed_hosts
                .iter()
                .any(|entry| parse_allowed(entry).is_ok_and(|(h, p)| h == host && p.is_none()));
            let hint = if portless {
                format!(" (an entry without a port allows port {default_port} only)")
            } else {
                String::new()
            };
            return Err(format!(
                "callback host {host:?} port {port} is not in [notifications] allowed_hosts{hint}"
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_address(&host, ip)?;
        }
        Ok(Target { host, port })
    }

    fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if self.allow_private || is_global(ip) {
            Ok(())
        } else {
            Err(format!(
                "callback host {host:?} is (or resolves to) {ip}, not a global address; \
                 [notifications] allow_private = true allows it"
            ))
        }
    }

    /// Resolves a checked target (blocking) and checks every address it resolves to; the
    /// addresses to connect to.
    pub fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve callback host {:?}: {e}", target.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!(
                "callback host {:?} resolves to no address",
                target.host
            ));
        }
        for addr in &addrs {
            self.check_address(&target.host, addr.ip())?;
        }
        Ok(addrs)
    }
}

/// Whether `ip` is a global unicast address: not loopback, private (RFC 1918, IPv6 unique
/// local), link-local, unspecified, shared (CGNAT), documentation, benchmarking, multicast,
/// broadcast or reserved; IPv4 addresses inside IPv6 ones (mapped, NAT64, 6to4) are judged as
/// IPv4.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved.
        || a >= 240)
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    // 64:ff9b::/96, NAT64: the IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_global_v4(embedded_v4(s[6], s[7]));
    }
    // 2002::/16, 6to4: the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_global_v4(embedded_v4(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // ::/96, IPv4-compatible (deprecated), and other addresses under ::/16.
        || s[0] == 0
        // 100::/64, discard only.
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
        // fc00::/7, unique local.
        || (s[0] & 0xfe00) == 0xfc00
        // fe80::/10, link-local; fec0::/10, site-local (deprecated).
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // 2001:db8::/32, documentation.
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        // 2001::/23, IETF protocol assignments (Teredo 2001::/32 among them).
        || (s[0] == 0x2001 && s[1] < 0x200))
}
