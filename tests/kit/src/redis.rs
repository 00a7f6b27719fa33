//! A real `redis-server` per test, on its own free loopback port, with no persistence;
//! killed when dropped (or earlier with [`Redis::kill`], to test an outage).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::process::KillOnDrop;

/// A `redis-server` on a free loopback port; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<KillOnDrop>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// Starts on `port` and waits (10 s at most) until it answers PING.
    pub fn start_on(port: u16) -> Redis {
        Self::start_with(port, &[])
    }

    /// [`Redis::start_on`] with more command-line options (e.g. `--replicaof HOST PORT`).
    pub fn start_with(port: u16, extra: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}); the Redis tests need it: \
                     scripts/install-test-deps.sh installs it (apt-get install -y redis-server)"
                )
            });
        let mut server = Redis {
            port,
            child: Some(KillOnDrop(child)),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("redis-server on port {} exited: {status}", self.port);
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not come up within 10 s",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends a signal (e.g. "STOP" to freeze the server, "CONT" to resume it).
    pub fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("server running");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Kills the server now (an outage); dropping it afterwards does nothing more.
    pub fn kill(&mut self) {
        self.child.take();
    }
}
