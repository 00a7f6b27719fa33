//! A moto S3 server for tests (scripts/s3-server.sh installs and starts it).

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::{repo_root, tempdir};
use crate::ports::free_port;
use crate::process::KillOnDrop;

/// A moto S3 server on a free port, killed on drop. Panics (fails the test) with the
/// server's output if it does not come up: these tests are never skipped.
pub struct S3Server {
    child: KillOnDrop,
    pub port: u16,
    log: PathBuf,
}

impl S3Server {
    pub fn start() -> S3Server {
        let script = repo_root().join("scripts/s3-server.sh");
        let port = free_port();
        let logdir = tempdir("moto");
        let log = logdir.join("moto.log");
        let logf = fs::File::create(&log).unwrap();
        let child = Command::new(&script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let mut server = S3Server {
            child: KillOnDrop(child),
            port,
            log,
        };
        server.wait_ready(Duration::from_secs(240));
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "S3 test server (scripts/s3-server.sh {}) exited with {status} before becoming ready; output:\n{}",
                    self.port,
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if self.request("GET", "/").is_some() {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "S3 test server (scripts/s3-server.sh {}) not ready after {timeout:?}; output:\n{}",
                    self.port,
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Minimal HTTP/1.1 request (moto accepts unsigned requests); returns the status code.
    pub fn request(&self, method: &str, path: &str) -> Option<u16> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        resp.split_whitespace().nth(1)?.parse().ok()
    }

    /// Object keys in `bucket` (ListObjectsV2, unsigned), in the order moto returns them.
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let req = format!(
            "GET /{bucket}?list-type=2 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if s.write_all(req.as_bytes()).is_err() {
            return Vec::new();
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// One unsigned request with `body`; the status and the response body.
    fn exchange(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .ok()?;
        s.write_all(body).ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let status = resp.split_whitespace().nth(1)?.parse().ok()?;
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// Starts a multipart upload of `key` and uploads one part, as a process killed
    /// mid-upload leaves it; returns the upload id. moto answered an UploadPart with 500
    /// once in CI (an internal error, which S3 clients retry): the pair is tried up to
    /// three times, and a last failure shows moto's log.
    pub fn abandon_upload(&self, bucket: &str, key: &str) -> String {
        let mut last = String::new();
        for _ in 0..3 {
            match self.try_abandon_upload(bucket, key) {
                Ok(id) => return id,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        panic!("{last}\nmoto's log:\n{log}");
    }

    fn try_abandon_upload(&self, bucket: &str, key: &str) -> Result<String, String> {
        let (status, body) = self
            .exchange("POST", &format!("/{bucket}/{key}?uploads"), b"")
            .ok_or("CreateMultipartUpload: no answer")?;
        if status != 200 {
            return Err(format!("CreateMultipartUpload: {status} {body}"));
        }
        let id = body
            .split("<UploadId>")
            .nth(1)
            .and_then(|b| b.split("</UploadId>").next())
            .ok_or_else(|| format!("no UploadId in {body}"))?
            .to_string();
        let part = vec![7u8; 64 * 1024];
        let (status, body) = self
            .exchange(
                "PUT",
                &format!("/{bucket}/{key}?partNumber=1&uploadId={id}"),
                &part,
            )
            .ok_or("UploadPart: no answer")?;
        if status != 200 {
            // Not left behind for the retry to double: the test counts uploads.
            let _ = self.exchange("DELETE", &format!("/{bucket}/{key}?uploadId={id}"), b"");
            return Err(format!("UploadPart {id}: {status} {body}"));
        }
        Ok(id)
    }

    /// The keys of the unfinished multipart uploads in `bucket` (ListMultipartUploads).
    pub fn uploads(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self
            .exchange("GET", &format!("/{bucket}?uploads"), b"")
            .expect("ListMultipartUploads");
        assert_eq!(status, 200, "{body}");
        let mut keys: Vec<String> = body
            .split("<Upload>")
            .skip(1)
            .filter_map(|u| u.split("<Key>").nth(1)?.split("</Key>").next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, Some(200), "creating bucket {bucket} on moto");
    }
}
