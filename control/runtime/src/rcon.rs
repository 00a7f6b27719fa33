//! A minimal, bounded RCON client (Source RCON protocol, as Minecraft speaks it).
//!
//! Used to stop servers gracefully (`save-all`, `stop`) and, for warm swaps, to move
//! players (`transfer`). Vanilla RCON is quirky (responses split at 4096 bytes with no end
//! marker, occasional hangs), so every call is bounded in time and every packet in size:
//! the `rcon` crate trusts the length field, which a broken server can set to anything.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LOGIN: i32 = 3;
const COMMAND: i32 = 2;
/// Requests are limited to 1446 bytes by vanilla; responses come in ≤ 4096-byte pieces.
const MAX_REQUEST: usize = 1446;
const MAX_PACKET: usize = 4096 + 14;

#[derive(Debug, Error)]
pub enum RconError {
    #[error("RCON at {addr}: {what}")]
    Io { addr: String, what: String },
    #[error("RCON at {addr}: wrong password")]
    Auth { addr: String },
    #[error("RCON at {addr}: no answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("RCON command longer than {MAX_REQUEST} bytes")]
    TooLong,
}

pub struct Rcon {
    stream: TcpStream,
    addr: String,
    limit: Duration,
    next_id: i32,
}

impl Rcon {
    /// Connects and logs in, within `limit`.
    pub async fn connect(addr: &str, password: &str, limit: Duration) -> Result<Self, RconError> {
        let io = |e: std::io::Error| RconError::Io {
            addr: addr.to_string(),
            what: e.to_string(),
        };
        let stream = timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| RconError::Timeout {
                addr: addr.into(),
                secs: limit.as_secs(),
            })?
            .map_err(io)?;
        let mut rcon = Self {
            stream,
            addr: addr.to_string(),
            limit,
            next_id: 1,
        };
        let (id, _) = rcon.exchange(LOGIN, password).await?;
        if id == -1 {
            return Err(RconError::Auth { addr: addr.into() });
        }
        Ok(rcon)
    }

    /// Runs a console command and returns the first response packet's text.
    pub async fn command(&mut self, cmd: &str) -> Result<String, RconError> {
        Ok(self.exchange(COMMAND, cmd).await?.1)
    }

    async fn exchange(&mut self, kind: i32, body: &str) -> Result<(i32, String), RconError> {
        if body.len() > MAX_REQUEST {
            return Err(RconError::TooLong);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut packet = Vec::with_capacity(body.len() + 14);
        packet.extend_from_slice(&((body.len() + 10) as i32).to_le_bytes());
        packet.extend_from_slice(&id.to_le_bytes());
        packet.extend_from_slice(&kind.to_le_bytes());
        packet.extend_from_slice(body.as_bytes());
        packet.extend_from_slice(&[0, 0]);
        let addr = self.addr.clone();
        let secs = self.limit.as_secs();
        timeout(self.limit, async {
            self.stream.write_all(&packet).await?;
            loop {
                let len = self.stream.read_i32_le().await?;
                if !(10..=MAX_PACKET as i32).contains(&len) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("packet length {len}"),
                    ));
                }
                let mut rest = vec![0u8; len as usize];
                self.stream.read_exact(&mut rest).await?;
                let got_id = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let text = String::from_utf8_lossy(&rest[8..rest.len() - 2]).into_owned();
                // Vanilla sends an empty type-0 response before the login result; skip it.
                if kind == LOGIN && got_id != -1 && got_id != id {
                    continue;
                }
                return Ok((got_id, text));
            }
        })
        .await
        .map_err(|_| RconError::Timeout {
            addr: addr.clone(),
            secs,
        })?
        .map_err(|e| RconError::Io {
            addr,
            what: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_testkit::fake_rcon;

    #[tokio::test]
    async fn login_command_and_bounds() {
        let (addr, _commands) = fake_rcon(Some("pw")).await;
        let limit = Duration::from_secs(2);
        assert!(matches!(
            Rcon::connect(&addr, "nope", limit).await,
            Err(RconError::Auth { .. })
        ));
        let mut r = Rcon::connect(&addr, "pw", limit).await.unwrap();
        assert_eq!(r.command("save-all").await.unwrap(), "ran save-all");
        assert!(matches!(r.command("huge").await, Err(RconError::Io { .. })));
        assert!(matches!(
            r.command(&"x".repeat(2000)).await,
            Err(RconError::TooLong)
        ));
    }
}
