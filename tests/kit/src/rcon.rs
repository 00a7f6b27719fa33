//! A fake RCON server (the Source RCON protocol a Minecraft server speaks on its RCON
//! port), for testing the RCON client and what Warden says to a server before it stops it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Packet types: a login, and a command (its response has the same number).
const LOGIN: i32 = 3;
const COMMAND: i32 = 2;
/// A request's length field counts id, type, body and two NULs; RCON bodies are short.
const MAX_PACKET: usize = 4096 + 10;

/// Starts a fake RCON server on a free loopback port (in the current tokio runtime) and
/// returns its address and the commands it receives, in order.
///
/// A login succeeds with `password`, or with any password when it is None (a failed one is
/// answered with id -1). A command is answered with `ran <command>`, except `huge`, which
/// is answered with a length field of `i32::MAX` and nothing after it, as a broken server
/// would.
pub async fn fake_rcon(password: Option<&str>) -> (String, UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake RCON");
    let addr = l.local_addr().expect("fake RCON address").to_string();
    let password = password.map(str::to_string);
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (tx, password) = (tx.clone(), password.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(len) = s.read_i32_le().await else {
                        return;
                    };
                    let Some(len) = usize::try_from(len)
                        .ok()
                        .filter(|n| (10..=MAX_PACKET).contains(n))
                    else {
                        return;
                    };
                    let mut rest = vec![0u8; len];
                    if s.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    let id = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    let kind = i32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
                    let body = String::from_utf8_lossy(&rest[8..len - 2]).to_string();
                    let (rid, text) = match kind {
                        LOGIN if password.as_ref().is_none_or(|p| *p == body) => {
                            (id, String::new())
                        }
                        LOGIN => (-1, String::new()),
                        _ => {
                            let huge = body == "huge";
                            if kind == COMMAND {
                                let _ = tx.send(body.clone());
                            }
                            if huge {
                                let _ = s.write_all(&i32::MAX.to_le_bytes()).await;
                                return;
                            }
                            (id, format!("ran {body}"))
                        }
                    };
                    let mut out = Vec::new();
                    out.extend(((text.len() + 10) as i32).to_le_bytes());
                    out.extend(rid.to_le_bytes());
                    out.extend(COMMAND.to_le_bytes());
                    out.extend(text.as_bytes());
                    out.extend([0, 0]);
                    let _ = s.write_all(&out).await;
                }
            });
        }
    });
    (addr, rx)
}
