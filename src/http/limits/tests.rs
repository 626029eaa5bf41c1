//! Tests of the per-client limits (beside `mod.rs`, which they test).

use super::*;

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, 0, 0, last]))
}

fn nth(n: u32) -> Option<IpAddr> {
    Some(IpAddr::from((0x0a00_0000 + n).to_be_bytes()))
}

fn rate(rate_per_s: f64, burst: f64) -> LimitSettings {
    LimitSettings {
        rate_per_s,
        burst,
        ..LimitSettings::default()
    }
}

#[test]
fn a_client_over_its_rate_waits_and_others_do_not() {
    let limits = Limits::new(rate(10.0, 5.0));
    let t0 = Instant::now();
    for _ in 0..5 {
        drop(limits.admit(ip(1), t0).unwrap());
    }
    let refused = limits.admit(ip(1), t0).err().unwrap();
    assert_eq!(refused.code, "rate_limited");
    assert_eq!(refused.retry_after_s, Some(1));
    assert!(
        limits.admit(ip(2), t0).is_ok(),
        "another client is unaffected"
    );
    // Tokens come back at the rate: 0.2 s gives two requests.
    let later = t0 + Duration::from_millis(200);
    assert!(limits.admit(ip(1), later).is_ok());
    assert!(limits.admit(ip(1), later).is_ok());
    assert!(limits.admit(ip(1), later).is_err());
}

#[test]
fn requests_in_flight_are_bounded_per_client() {
    let limits = Limits::new(LimitSettings {
        max_in_flight: 2,
        ..LimitSettings::default()
    });
    let now = Instant::now();
    let a = limits.admit(ip(1), now).unwrap();
    let _b = limits.admit(ip(1), now).unwrap();
    assert_eq!(
        limits.admit(ip(1), now).err().unwrap().code,
        "too_many_requests_in_flight"
    );
    drop(a);
    assert!(
        limits.admit(ip(1), now).is_ok(),
        "a finished request frees a place"
    );
    assert!(limits.admit(None, now).is_ok(), "no address, no limit");
    drop(_b);
    assert!(
        limits.lock().in_flight.len() <= 1,
        "idle clients leave no entry"
    );
}

/// A client that made one request is forgotten once its bucket has refilled: a stream of
/// new addresses, each seen once, keeps the map small.
#[test]
fn clients_seen_once_are_forgotten_once_their_bucket_refilled() {
    let limits = Limits::new(rate(100.0, 10.0));
    let t0 = Instant::now();
    for n in 0..100_000u32 {
        // A new address every 0.1 ms: each bucket is full again 10 ms later.
        let now = t0 + Duration::from_micros(100 * u64::from(n));
        drop(limits.admit(nth(n), now).unwrap());
    }
    let (remembered, visited) = limits.remembered();
    assert!(
        remembered <= 2 * FIRST_SWEEP,
        "{remembered} clients remembered"
    );
    assert!(visited <= 3 * 100_000, "passes looked at {visited} buckets");
}

/// New addresses past the first pass, while every client remembered is busy: passes stay
/// rare (not one per new address), and the map stops at `MAX_CLIENTS`; the addresses past
/// it share one bucket.
#[test]
fn passes_are_amortised_and_the_map_is_bounded() {
    let limits = Limits::new(rate(1.0, 2.0));
    let now = Instant::now();
    let total = MAX_CLIENTS as u32 + 20_000;
    for n in 0..total {
        // Past the bound, all but the first two are refused (the shared bucket is spent).
        let _ = limits.admit(nth(n), now);
    }
    let (remembered, visited) = limits.remembered();
    assert_eq!(remembered, MAX_CLIENTS);
    assert!(
        visited <= 3 * total as usize,
        "passes looked at {visited} buckets for {total} new clients"
    );
    // The shared bucket (burst 2) was spent by the first two past the bound.
    assert_eq!(
        limits.admit(nth(total), now).err().unwrap().code,
        "rate_limited"
    );
    // Seconds later every bucket is full again: a pass (at most one a second at the
    // bound) forgets them, and a new client has a bucket of its own.
    let later = now + Duration::from_secs(3);
    assert!(limits.admit(nth(total + 1), later).is_ok());
    assert!(limits.remembered().0 < MAX_CLIENTS);
}

#[test]
fn ipv6_clients_are_keyed_by_their_64() {
    let limits = Limits::new(rate(1.0, 2.0));
    let now = Instant::now();
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff:eeee:dddd:cccc".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert!(limits.admit(Some(a), now).is_ok());
    assert!(limits.admit(Some(b), now).is_ok());
    assert_eq!(
        limits.admit(Some(a), now).err().unwrap().code,
        "rate_limited",
        "one /64, one bucket"
    );
    assert!(limits.admit(Some(other), now).is_ok(), "another /64");
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(client_key(mapped), ip(1).unwrap());
}

#[test]
fn address_blocks_parse_and_match() {
    let block: Cidr = "10.1.0.0/16".parse().unwrap();
    assert!(block.contains("10.1.200.3".parse().unwrap()));
    assert!(block.contains("::ffff:10.1.0.9".parse().unwrap()));
    assert!(!block.contains("10.2.0.1".parse().unwrap()));
    assert!(!block.contains("2001:db8::1".parse().unwrap()));
    let one: Cidr = "127.0.0.1".parse().unwrap();
    assert!(one.contains("127.0.0.1".parse().unwrap()));
    assert!(!one.contains("127.0.0.2".parse().unwrap()));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
    assert!(
        "0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains(ip(9).unwrap())
    );
    for bad in ["10.0.0.0/33", "nowhere/8", "10.0.0.0/x", "::/129"] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let limits = Limits::new(LimitSettings {
        trusted_proxies: vec!["10.0.0.0/24".parse().unwrap(), "::1".parse().unwrap()],
        ..LimitSettings::default()
    });
    let proxy = ip(5);
    let stranger = Some(IpAddr::from([192, 0, 2, 7]));
    let client = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    // From an untrusted peer the header is ignored.
    assert_eq!(limits.client_ip(stranger, "203.0.113.9"), stranger);
    // From a trusted one: the right-most address that is not a trusted proxy.
    assert_eq!(
        limits.client_ip(proxy, "203.0.113.9"),
        client("203.0.113.9")
    );
    assert_eq!(
        limits.client_ip(proxy, "6.6.6.6, 203.0.113.9, 10.0.0.3"),
        client("203.0.113.9"),
        "a spoofed left part is not believed"
    );
    assert_eq!(
        limits.client_ip(proxy, "203.0.113.9:4711"),
        client("203.0.113.9")
    );
    assert_eq!(
        limits.client_ip(Some("::1".parse().unwrap()), "[2001:db8::5]:80"),
        client("2001:db8::5")
    );
    // No header, or one that does not parse: the proxy itself.
    assert_eq!(limits.client_ip(proxy, ""), proxy);
    assert_eq!(limits.client_ip(proxy, "unknown"), proxy);
    assert_eq!(limits.client_ip(None, "203.0.113.9"), None);
}

#[test]
fn streams_are_bounded_per_client_and_per_node() {
    let limits = Limits::new(LimitSettings {
        max_streams_per_client: 2,
        max_streams: 3,
        ..LimitSettings::default()
    });
    let a = limits.open_stream(ip(1)).unwrap();
    let _b = limits.open_stream(ip(1)).unwrap();
    let refused = limits.open_stream(ip(1)).err().unwrap();
    assert_eq!(
        (refused.status.as_u16(), refused.code),
        (429, "too_many_streams")
    );
    let _c = limits.open_stream(ip(2)).unwrap();
    let full = limits.open_stream(ip(3)).err().unwrap();
    assert_eq!(
        (full.status.as_u16(), full.code),
        (503, "too_many_streams_on_node")
    );
    drop(a);
    assert_eq!(limits.open_streams(), 2);
    assert!(
        limits.open_stream(ip(3)).is_ok(),
        "a closed stream frees a place"
    );
}
