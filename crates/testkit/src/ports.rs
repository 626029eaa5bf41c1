//! Free loopback ports, and numbers for names that must not collide.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A loopback port free now, for a process this one starts next. Ports come from below the
/// kernel's ephemeral range (32768 and up on Linux), each process counting up from its own
/// offset in 20000-32767: a port the kernel hands out as `:0` may be taken again by any
/// outgoing connection before the process meant to bind it does, and load tests open many.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}-{}", FIRST + COUNT - 1)
}

/// A number no other call in this process returns (for names that must not collide).
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_distinct() {
        let (a, b) = (free_port(), free_port());
        assert_ne!(a, b);
        assert!((20_000..32_768).contains(&a), "{a}");
        TcpListener::bind(("127.0.0.1", b)).unwrap();
    }
}
