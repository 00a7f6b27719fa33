//! `warden demo-server`: a tiny Minecraft-speaking server for the quickstart.
//!
//! A newcomer should see what Warden does (a sleeping server, a wake, the anteroom) without
//! Java or a download. This server answers server-list pings and ends every login with a
//! friendly Disconnect that says what just happened and how long ago it started, which is
//! how long the wake took when the visit is the one that woke it. Everything it reads is
//! bounded in size and time; a confused client is simply closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};
use warden_wire::{
    disconnect_packet, pong_packet, status_response_packet, FrameDecoder, Handshake, Intent,
    LoginStart, PacketReader, WireError,
};

/// A client gets this long for its whole exchange (handshake to pong or Login Start).
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// Handshake, status request, ping and Login Start are all far below this.
const MAX_FRAME: usize = 4096;

/// Runs the demo server until the process is stopped.
pub fn run(listen: SocketAddr, name: String) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the demo server's runtime")?;
    rt.block_on(serve(listen, name))
}

async fn serve(listen: SocketAddr, name: String) -> anyhow::Result<()> {
    let started = Instant::now();
    let visited = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    info!(%listen, %name, "demo server up");
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let name = name.clone();
        let visited = visited.clone();
        tokio::spawn(async move {
            let visit = visit(socket, &name, started, &visited);
            match tokio::time::timeout(EXCHANGE_DEADLINE, visit).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => info!(%peer, error = %e, "client closed"),
                Err(_) => info!(%peer, "client too slow; closed"),
            }
        });
    }
}

/// Errors a visit can end with; all of them just close the connection.
#[derive(Debug, thiserror::Error)]
enum VisitError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Wire(#[from] WireError),
    #[error("closed before a whole packet")]
    Eof,
}

async fn visit(
    mut socket: TcpStream,
    name: &str,
    started: Instant,
    visited: &AtomicBool,
) -> Result<(), VisitError> {
    let _ = socket.set_nodelay(true);
    let mut frames = FrameDecoder::new();
    let handshake = Handshake::parse(&next_frame(&mut socket, &mut frames).await?)?;
    match handshake.intent {
        Intent::Status => {
            // Status Request (empty), then Ping.
            next_frame(&mut socket, &mut frames).await?;
            socket
                .write_all(&status_response_packet(&status_json(
                    name,
                    handshake.protocol,
                    started,
                )))
                .await?;
            let ping = next_frame(&mut socket, &mut frames).await?;
            let mut r = PacketReader::new(&ping);
            if r.varint()? == 0x01 {
                socket.write_all(&pong_packet(r.i64()?)).await?;
            }
        }
        Intent::Login | Intent::Transfer => {
            let login = LoginStart::parse(
                &next_frame(&mut socket, &mut frames).await?,
                handshake.protocol,
            )?;
            let up = started.elapsed().as_secs_f64();
            let first = !visited.swap(true, Ordering::Relaxed);
            info!(player = %login.name.escape_debug(), up_s = up, first, "visit");
            socket
                .write_all(&disconnect_packet(&farewell(&login.name, name, up, first)))
                .await?;
        }
    }
    socket.shutdown().await?;
    Ok(())
}

async fn next_frame(
    socket: &mut TcpStream,
    frames: &mut FrameDecoder,
) -> Result<bytes::Bytes, VisitError> {
    loop {
        if let Some(frame) = frames.next_frame(MAX_FRAME)? {
            return Ok(frame);
        }
        if frames.buffered().len() > MAX_FRAME + 8 {
            return Err(VisitError::Wire(WireError::BadLength));
        }
        if socket.read_buf(frames.buffer_mut()).await? == 0 {
            return Err(VisitError::Eof);
        }
    }
}

/// The server-list entry: the client's own protocol, so every version shows it as joinable.
fn status_json(name: &str, protocol: i32, started: Instant) -> String {
    serde_json::json!({
        "version": { "name": "Warden demo", "protocol": protocol },
        "players": { "max": 20, "online": 0, "sample": [] },
        "description": {
            "text": format!("{name}: awake for {} s. Join me!", started.elapsed().as_secs())
        },
        "enforcesSecureChat": false,
    })
    .to_string()
}

/// What a visiting player reads when the demo ends their visit. The first visitor after a
/// start is the one whose join woke the server, so the time since the start is the wake.
fn farewell(player: &str, name: &str, up_s: f64, first: bool) -> String {
    let when = if first {
        format!(
            "I started {up_s:.1} s ago: Warden woke me when you joined and held you until I was ready."
        )
    } else if up_s < 120.0 {
        format!("I have been awake for {up_s:.0} s, since Warden woke me for an earlier visitor.")
    } else {
        format!("I have been awake for {:.0} min.", up_s / 60.0)
    };
    format!(
        "Hello {player}, this is {name}, a demo server behind Warden.\n{when}\nNobody stays here: I fall asleep again a minute after the last visit (watch `warden status`)."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn farewell_says_how_long_the_wake_took() {
        let text = farewell("Steve", "demo", 1.234, true);
        assert!(text.contains("Hello Steve"), "{text}");
        assert!(text.contains("1.2 s ago: Warden woke me"), "{text}");
        assert!(farewell("Alex", "demo", 30.0, false).contains("earlier visitor"));
        assert!(farewell("Alex", "demo", 600.0, false).contains("10 min"));
    }

    #[test]
    fn status_echoes_the_client_protocol() {
        let json: serde_json::Value =
            serde_json::from_str(&status_json("demo", 769, Instant::now())).unwrap();
        assert_eq!(json["version"]["protocol"], 769);
    }
}
