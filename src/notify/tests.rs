//! Unit tests of the callback rules and signatures.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::rules::*;
use super::*;
use crate::config::parse_allowed;

fn rules(hosts: &[&str], allow_private: bool) -> CallbackRules {
    CallbackRules {
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        allow_private,
    }
}

#[test]
fn only_allowed_http_hosts_pass() {
    let open = rules(&["hooks.example.com", "127.0.0.1:9000"], true);
    assert!(open.check_url("https://hooks.example.com/done").is_ok());
    assert!(open.check_url("http://127.0.0.1:9000/x").is_ok());
    assert!(open.check_url("http://127.0.0.1:9001/x").is_err());
    assert!(open.check_url("http://169.254.169.254/latest").is_err());
    assert!(open.check_url("ftp://hooks.example.com/").is_err());
    assert!(open.check_url("not a url").is_err());
    assert!(
        rules(&[], true)
            .check_url("https://hooks.example.com/")
            .is_err(),
        "none by default"
    );
}

#[test]
fn an_entry_without_a_port_allows_the_default_port_only() {
    let r = rules(
        &[
            "hooks.example.com",
            "alerts.example.com:8443",
            "[2001:4860::1]",
        ],
        false,
    );
    let ok = |url: &str| r.check_url(url).map(|t| t.port);
    assert_eq!(ok("https://hooks.example.com/x"), Ok(443));
    assert_eq!(ok("http://hooks.example.com/x"), Ok(80));
    assert_eq!(ok("https://hooks.example.com:443/x"), Ok(443));
    assert!(ok("https://hooks.example.com:8443/x").is_err());
    assert!(ok("http://hooks.example.com:6379/x").is_err());
    assert!(
        ok("http://hooks.example.com:443/x").is_err(),
        "443 is https's port"
    );
    assert_eq!(ok("https://alerts.example.com:8443/x"), Ok(8443));
    assert!(ok("https://alerts.example.com/x").is_err());
    assert_eq!(ok("https://[2001:4860::1]/x"), Ok(443));
    assert!(ok("https://[2001:4860::1]:8443/x").is_err());
    assert_eq!(parse_allowed("[::1]:80"), Ok(("::1".to_string(), Some(80))));
    assert_eq!(parse_allowed("::1"), Ok(("::1".to_string(), None)));
    assert!(parse_allowed("host:0").is_err());
    assert!(parse_allowed("host:http").is_err());
    assert!(parse_allowed("").is_err());
}

#[test]
fn ip_literals_that_are_not_global_are_refused_unless_allowed() {
    let hosts = [
        "127.0.0.1:9000",
        "10.1.2.3",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "[::1]",
        "[fd00::1]",
        "[fe80::1]",
        "[::ffff:127.0.0.1]",
        "8.8.8.8",
    ];
    let strict = rules(&hosts, false);
    let open = rules(&hosts, true);
    for url in [
        "http://127.0.0.1:9000/",
        "http://10.1.2.3/",
        "http://192.168.1.1/",
        "http://169.254.169.254/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let refused = strict.check_url(url).unwrap_err();
        assert!(refused.contains("allow_private"), "{url}: {refused}");
        assert!(open.check_url(url).is_ok(), "{url}");
    }
    assert!(strict.check_url("http://8.8.8.8/").is_ok());
}

#[test]
fn global_addresses_are_told_from_special_ones() {
    for ip in [
        "127.0.0.1",
        "127.8.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "0.1.2.3",
        "100.64.0.1",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
        "2001::1",
        "100::1",
    ] {
        assert!(!is_global(ip.parse().unwrap()), "{ip} is not global");
    }
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "2001:4860:4860::8888",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert!(is_global(ip.parse().unwrap()), "{ip} is global");
    }
}

#[test]
fn credentials_in_a_url_are_refused_and_never_shown() {
    let r = rules(&["hooks.example.com"], false);
    for url in [
        "https://user:s3cret@hooks.example.com/x",
        "https://s3cret@hooks.example.com/x",
        "ftp://user:s3cret@hooks.example.com/x",
    ] {
        let refused = r.check_url(url).unwrap_err();
        assert!(!refused.contains("s3cret"), "{refused}");
    }
    assert_eq!(
        redact("https://user:s3cret@hooks.example.com/a@b?c=d"),
        "https://***@hooks.example.com/a@b?c=d"
    );
    assert_eq!(redact("https://h/x@y"), "https://h/x@y");
}

#[test]
fn resolved_addresses_are_checked() {
    let target = Target {
        host: "localhost".into(),
        port: 9,
    };
    let refused = rules(&["localhost:9"], false).resolve(&target).unwrap_err();
    assert!(refused.contains("not a global address"), "{refused}");
    let addrs = rules(&["localhost:9"], true).resolve(&target).unwrap();
    assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
}

#[test]
fn the_resolver_answers_the_checked_addresses_whatever_the_host() {
    use ureq::unversioned::resolver::Resolver;
    let checked: SocketAddr = "192.0.2.7:8443".parse().unwrap();
    let uri: ureq::http::Uri = "https://elsewhere.example.com/".parse().unwrap();
    let config = ureq::config::Config::default();
    let timeout = ureq::unversioned::transport::NextTimeout::default();
    let got = Checked(vec![checked])
        .resolve(&uri, &config, timeout)
        .unwrap();
    assert_eq!(got.iter().copied().collect::<Vec<_>>(), vec![checked]);
}

#[test]
fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
    // RFC 4231 test case 2, the message being "{timestamp}.{body}".
    assert_eq!(sign("Jefe", 1234, b"what do ya want for nothing?"), {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1234.what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256={hex}")
    });
    assert_ne!(
        sign("Jefe", 1234, b"what do ya want for nothing?"),
        sign("Jefe", 1235, b"what do ya want for nothing?"),
        "the timestamp is signed"
    );
    let signature = sign("k", 1_000_000, b"{}");
    assert!(verify("k", "1000000", b"{}", &signature, 1_000_100, 300));
    assert!(
        !verify("k", "1000000", b"{}", &signature, 1_000_400, 300),
        "too old"
    );
    assert!(
        !verify("k", "1000001", b"{}", &signature, 1_000_100, 300),
        "other time"
    );
    assert!(
        !verify("k", "1000000", b"{ }", &signature, 1_000_100, 300),
        "other body"
    );
    assert!(
        !verify("j", "1000000", b"{}", &signature, 1_000_100, 300),
        "other key"
    );
    assert!(!verify("k", "1000000", b"{}", "sha256=00", 1_000_100, 300));
}
