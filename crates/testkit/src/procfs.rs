//! What processes and the machine use, read from Linux's `/proc` (zeros elsewhere).

/// The resident memory of process `pid`, in MB (one decimal).
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

/// CPU seconds a process has used, with those of its children it has waited for (Redis's AOF
/// rewrites); 0 if unknown. Its threads' own time is read to the nanosecond (each thread's
/// `schedstat`): the process-wide counters count in ticks of 10 ms, coarser than the load
/// generator's whole share of a short run. A thread that exits meanwhile takes its time with
/// it; the processes measured keep theirs.
pub fn cpu_seconds(pid: u32) -> f64 {
    let threads_ns: f64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("schedstat")).ok())
        .filter_map(|schedstat| schedstat.split_whitespace().next()?.parse::<f64>().ok())
        .sum();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the state on: cutime and
    // cstime are the 14th and 15th, in ticks of 1/100 s.
    let children_ticks: f64 = stat.rsplit_once(')').map_or(0.0, |(_, fields)| {
        fields
            .split_whitespace()
            .skip(13)
            .take(2)
            .filter_map(|t| t.parse::<f64>().ok())
            .sum()
    });
    threads_ns / 1e9 + children_ticks / 100.0
}

/// The whole machine's CPU ticks so far, (busy, idle), from `/proc/stat`.
pub fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (ticks.iter().sum::<f64>() - idle, idle)
}

/// The machine in words: `N cores, M GB`.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    format!("{cores} cores, {memory} GB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        if !std::path::Path::new("/proc/self").exists() {
            return;
        }
        let pid = std::process::id();
        assert!(rss_mb(pid) > 0.0);
        assert!(cpu_seconds(pid) > 0.0);
        let (busy, idle) = machine_ticks();
        assert!(busy > 0.0 && idle > 0.0);
        assert!(machine().ends_with(" GB"));
    }
}
