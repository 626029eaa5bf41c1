//! The signature of a delivery, and its check by a receiver.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature header's value: HMAC-SHA256 with `key` of `"{timestamp}.{body}"`, as
/// `sha256=<hex>`.
pub fn sign(key: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What a receiver checks (see the module's docs): that `signature` (`sha256=<hex>`) is the
/// HMAC-SHA256 with `key` of `"{timestamp}.{body}"`, compared in constant time, and that
/// `timestamp` (the `X-Trainyard-Timestamp` header) is within `tolerance_s` of `now_s`.
pub fn verify(
    key: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_s: u64,
    tolerance_s: u64,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<u64>() else {
        return false;
    };
    if ts.abs_diff(now_s) > tolerance_s {
        return false;
    }
    let Some(hex) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return false;
    }
    let Ok(expected) = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

pub(super) fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
