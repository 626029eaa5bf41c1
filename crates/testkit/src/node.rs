//! `trainyard node --config` processes: started, waited for until they answer, stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{http_agent, read_json};
use crate::poll::poll_child;

/// The `trainyard` binary to run: `$TRAINYARD_BIN`, else `trainyard` beside this process's
/// own executable (where cargo puts every binary of the workspace).
pub fn trainyard_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TRAINYARD_BIN").filter(|b| !b.is_empty()) {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // A test binary lies in `target/debug/deps`, the binaries one folder up.
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("trainyard{}", std::env::consts::EXE_SUFFIX))
}

/// `BIN node --config CONFIG`, logging at info to `log`: the command, to spawn.
pub fn node_command(bin: &Path, config: &Path, log: &Path) -> Command {
    let log = std::fs::File::create(log)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let mut command = Command::new(bin);
    command
        .arg("node")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log);
    command
}

/// Waits until the node `child` serving `url` answers `GET /cluster/health` with 200; fails at
/// once if it exits, and after `timeout`. `what` names it in the failure.
pub fn wait_ready(child: &mut Child, url: &str, timeout: Duration, what: &str) {
    poll_child(child, timeout, what, || {
        let (status, _) = read_json(
            http_agent(Duration::from_secs(10))
                .get(format!("{url}/cluster/health"))
                .call(),
        )?;
        (status == 200).then_some(())
    });
}

/// A running `trainyard node --config` process, stopped on drop the way an operator stops it
/// (SIGTERM, then SIGKILL after 10 s).
pub struct NodeProcess {
    /// The node's name (`[node] name`).
    pub name: String,
    pub child: Child,
    /// The base URL of its API, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl NodeProcess {
    /// Starts `bin node --config config` as node `name` serving HTTP on `http_port`, its log
    /// (at `RUST_LOG=warn`) in `log`, and returns once it answers (60 s at most).
    pub fn start(bin: &Path, name: &str, config: &Path, http_port: u16, log: &Path) -> Self {
        let mut command = node_command(bin, config, log);
        command.env("RUST_LOG", "warn");
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut node = NodeProcess {
            name: name.to_string(),
            child,
            url: format!("http://127.0.0.1:{http_port}"),
        };
        let what = format!("node {name} to start (log in {})", log.display());
        wait_ready(&mut node.child, &node.url, Duration::from_secs(60), &what);
        node
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory, in MB.
    pub fn rss_mb(&self) -> f64 {
        crate::procfs::rss_mb(self.child.id())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
