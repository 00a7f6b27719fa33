//! A Redis Sentinel deployment for failover tests, all real `redis-server` processes on
//! free loopback ports: a primary, two replicas and three sentinels (Debian's
//! `redis-server` runs sentinel mode with `--sentinel`; `redis-sentinel` is the same
//! binary). Two replicas, as the README recommends: after the primary is lost the new one
//! still has a replica to acknowledge writes. Failure detection is short
//! (`down-after-milliseconds` 1000 unless a test wants a slower failover) so a failover
//! takes a few seconds. Every process is killed when the value drops.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::tempdir;
use crate::ports::free_port;
use crate::process::KillOnDrop;
use crate::redis::Redis;

/// The name the sentinels watch the primary under.
pub const MASTER_NAME: &str = "warden";

/// A reply from a Redis or sentinel server, as far as the tests need one.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisReply {
    Text(String),
    Int(i64),
    Nil,
    Error(String),
    Array(Vec<RedisReply>),
}

impl RedisReply {
    /// The text of a simple or bulk string.
    pub fn text(&self) -> Option<&str> {
        match self {
            RedisReply::Text(s) => Some(s),
            _ => None,
        }
    }

    /// In a flat `[key, value, key, value…]` array (`SENTINEL master`), the value of `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        let RedisReply::Array(items) = self else {
            return None;
        };
        items
            .chunks(2)
            .find(|kv| kv[0].text() == Some(key))
            .and_then(|kv| kv.get(1)?.text())
    }
}

fn read_reply(r: &mut impl BufRead, depth: usize) -> Result<RedisReply, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply")?;
    let num = || rest.parse::<i64>().map_err(|e| format!("{line:?}: {e}"));
    match kind {
        "+" => Ok(RedisReply::Text(rest.to_string())),
        "-" => Ok(RedisReply::Error(rest.to_string())),
        ":" => Ok(RedisReply::Int(num()?)),
        "$" if num()? < 0 => Ok(RedisReply::Nil),
        "$" => {
            let mut buf = vec![0u8; num()? as usize + 2];
            std::io::Read::read_exact(r, &mut buf).map_err(|e| e.to_string())?;
            buf.truncate(buf.len() - 2);
            Ok(RedisReply::Text(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" if num()? < 0 => Ok(RedisReply::Nil),
        "*" if depth < 4 => (0..num()?)
            .map(|_| read_reply(r, depth + 1))
            .collect::<Result<_, _>>()
            .map(RedisReply::Array),
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

/// Sends one command to the server on `port` and reads its reply (2 s at most).
pub fn redis_query(port: u16, args: &[&str]) -> Result<RedisReply, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
    read_reply(&mut BufReader::new(s), 0)
}

/// A primary, two replicas and three sentinels watching them as [`MASTER_NAME`].
pub struct SentinelSet {
    /// `None` once killed.
    pub primary: Option<Redis>,
    pub replicas: Vec<Redis>,
    /// The sentinels' ports.
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<KillOnDrop>,
    pub dir: PathBuf,
}

impl SentinelSet {
    /// Starts the set with quick failure detection (1 s); see [`SentinelSet::start_with`].
    pub fn start() -> SentinelSet {
        Self::start_with(Duration::from_secs(1))
    }

    /// Starts the set, the sentinels taking a primary for dead after `down_after` without
    /// an answer (a failover follows about a second later), and waits (30 s at most)
    /// until every sentinel knows both replicas and the two other sentinels, so that a
    /// failover can happen.
    pub fn start_with(down_after: Duration) -> SentinelSet {
        let dir = tempdir("sentinel");
        // No delay before a full sync: a replica re-pointed at a new primary is in step at
        // once. A replica writes the data it syncs to disk: in the test's dir, one file each.
        let start = |extra: &[&str]| {
            let port = free_port();
            let file = format!("dump-{port}.rdb");
            let mut args = vec!["--repl-diskless-sync-delay", "0", "--dbfilename", &file];
            let dir_s = dir.to_string_lossy();
            args.extend(["--dir", &dir_s]);
            args.extend(extra);
            Redis::start_with(port, &args)
        };
        let primary = start(&[]);
        let primary_port = primary.port.to_string();
        let replicas = (0..2)
            .map(|_| start(&["--replicaof", "127.0.0.1", &primary_port]))
            .collect();
        let mut set = SentinelSet {
            primary: Some(primary),
            replicas,
            sentinel_ports: Vec::new(),
            sentinels: Vec::new(),
            dir,
        };
        set.wait("the replicas to be in sync", || {
            set.replicas.iter().all(|r| {
                let info = redis_query(r.port, &["INFO", "replication"]);
                matches!(info, Ok(RedisReply::Text(t)) if t.contains("master_link_status:up"))
            })
        });
        for i in 0..3 {
            let port = free_port();
            // Sentinel rewrites its config file: each gets its own, in the test's dir.
            let conf = set.dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {down_ms}\n\
                     sentinel failover-timeout {MASTER_NAME} {failover_ms}\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = set.dir.display(),
                    down_ms = down_after.as_millis(),
                    failover_ms = (down_after * 4).max(Duration::from_secs(4)).as_millis(),
                ),
            )
            .expect("write sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run redis-server --sentinel");
            set.sentinels.push(KillOnDrop(child));
            set.sentinel_ports.push(port);
        }
        set.wait("the sentinels to know the replica and each other", || {
            set.sentinel_ports.iter().all(|&p| {
                redis_query(p, &["SENTINEL", "master", MASTER_NAME]).is_ok_and(|m| {
                    m.field("num-slaves") == Some("2")
                        && m.field("num-other-sentinels") == Some("2")
                        && m.field("flags") == Some("master")
                })
            })
        });
        set
    }

    fn wait(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "sentinel set: gave up waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:port` of each sentinel, for `[store] sentinels`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// `sentinels = [...]` and `master_name`, for a `[store]` section.
    pub fn store_keys(&self) -> String {
        let list: Vec<String> = self
            .sentinel_addrs()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        format!(
            "sentinels = [{}]\nmaster_name = \"{MASTER_NAME}\"\n",
            list.join(", ")
        )
    }

    /// SIGKILLs the primary (no goodbye to the replica or the sentinels).
    pub fn kill_primary(&mut self) {
        if let Some(mut p) = self.primary.take() {
            p.kill();
        }
    }

    /// Sends a signal to every replica (`"STOP"` freezes them, `"CONT"` resumes them).
    pub fn signal_replicas(&self, sig: &str) {
        for r in &self.replicas {
            r.signal(sig);
        }
    }

    /// Waits (`within`) until a sentinel names a replica as the primary and that replica
    /// says it is one; returns its port.
    pub fn wait_failover(&self, within: Duration) -> u16 {
        let started = Instant::now();
        while started.elapsed() < within {
            for &p in &self.sentinel_ports {
                let named = redis_query(p, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
                let Ok(RedisReply::Array(a)) = named else {
                    continue;
                };
                let Some(port) = a.get(1).and_then(RedisReply::text) else {
                    continue;
                };
                let Some(r) = self.replicas.iter().find(|r| r.port.to_string() == port) else {
                    continue;
                };
                let promoted = matches!(redis_query(r.port, &["ROLE"]),
                    Ok(RedisReply::Array(a)) if a.first().and_then(RedisReply::text) == Some("master"));
                if promoted {
                    return r.port;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no failover to a replica within {within:?}");
    }
}
