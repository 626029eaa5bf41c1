//! Waiting for a condition with a deadline, never a bare sleep.

use std::process::Child;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Ok`, failing after `timeout` with the last `Err` it gave
/// (what was seen instead).
pub fn poll_seen<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, as `poll` does, but fails at once (instead of at the
/// deadline) when `child`, the process that should answer, has exited; one that does not
/// answer in time is killed before the test fails.
pub fn poll_child<T>(
    child: &mut Child,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if let Some(status) = child
            .try_wait()
            .expect("the child process can be waited for")
        {
            panic!("waiting for {what}: the process exited ({status})");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out waiting for {what} ({timeout:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
