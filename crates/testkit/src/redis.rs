//! `redis-server` processes on free loopback ports, stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::poll::{poll, poll_child};
use crate::ports::free_port;
use crate::temp::temp_dir;

/// The arguments of a server that keeps an append-only file, as `config/redis.conf` does.
const DURABLE: [&str; 6] = [
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
];

/// A `redis-server` on a free loopback port, stopped on drop. `start` keeps nothing on disk;
/// `durable` keeps an append-only file (as `config/redis.conf` does) and can be restarted.
/// Its folder goes with it.
pub struct RedisServer {
    child: Mutex<Child>,
    args: Vec<String>,
    dir: PathBuf,
    host: String,
    pub port: u16,
    pub url: String,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::on("127.0.0.1", &["--save", "", "--appendonly", "no"])
    }

    /// With AOF on (`appendfsync everysec`), in its folder.
    pub fn durable() -> RedisServer {
        Self::on("127.0.0.1", &DURABLE)
    }

    /// A durable replica of this server, returned once it has synced: the primary's writes
    /// reach it, and `WAIT` counts it.
    pub fn replica(&self) -> RedisServer {
        let port = self.port.to_string();
        let mut args = DURABLE.to_vec();
        args.extend(["--replicaof", self.host.as_str(), port.as_str()]);
        let replica = Self::on("127.0.0.1", &args);
        poll(
            Duration::from_secs(30),
            "the replica to sync with its primary",
            || {
                let info = replica.query_info("replication").ok()?;
                info.contains("master_link_status:up").then_some(())
            },
        );
        replica
    }

    /// Listening on `host` (an address of the test's own), with `extra` arguments.
    pub fn on(host: &str, extra: &[&str]) -> RedisServer {
        let port = free_port();
        // Its own folder: a replica writes the data it syncs to `dump.rdb` there (and would
        // load a stale one left in the working directory).
        let dir = temp_dir("redis");
        let mut args = vec![
            "--port".to_string(),
            port.to_string(),
            "--bind".into(),
            host.into(),
            "--dir".into(),
            dir.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        RedisServer {
            child: Mutex::new(Self::spawn(&args, host, port)),
            args,
            dir,
            host: host.to_string(),
            port,
            url: format!("redis://{host}:{port}/0"),
        }
    }

    fn spawn(args: &[String], host: &str, port: u16) -> Child {
        let mut child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it: apt-get install redis-server)");
        poll_child(
            &mut child,
            Duration::from_secs(60),
            &format!("redis-server to listen on port {port}"),
            || std::net::TcpStream::connect((host, port)).ok().map(|_| ()),
        );
        child
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// The server's `INFO section` (`all` for every section), as it answers it.
    pub fn query_info(&self, section: &str) -> redis::RedisResult<String> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut connection = client.get_connection()?;
        redis::cmd("INFO").arg(section).query(&mut connection)
    }

    /// Kills the server and waits until it is gone (the store is unreachable from then on).
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a killed server again, on the same port with the same arguments.
    pub fn start_again(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.wait();
        *child = Self::spawn(&self.args, &self.host, self.port);
    }

    /// Stops the server the way an operator would (SIGTERM: it writes its AOF and exits),
    /// waits `down`, and starts it again on the same port and files.
    pub fn restart(&self, down: Duration) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        std::thread::sleep(down);
        *child = Self::spawn(&self.args, &self.host, self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
