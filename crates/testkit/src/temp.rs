//! Scratch folders under the system temp dir, removed once their process is gone.

use std::path::{Path, PathBuf};

use crate::ports::unique;

/// A fresh, empty folder under the system temp dir, `trainyard-{tag}-{pid}-{n}`. Folders of
/// processes that are gone are removed on the first call, so runs do not pile up.
pub fn temp_dir(tag: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_dead_processes_dirs);
    let dir = std::env::temp_dir().join(format!(
        "trainyard-{tag}-{}-{}",
        std::process::id(),
        unique()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Removes the `temp_dir` folders of processes no longer running.
fn remove_dead_processes_dirs() {
    // Which processes run is read from /proc: without it, nothing is removed.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("trainyard-")) else {
            continue;
        };
        // `{tag}-{pid}-{n}`: the pid is the first number.
        let pid = rest
            .split('-')
            .find(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if let Some(pid) = pid
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
