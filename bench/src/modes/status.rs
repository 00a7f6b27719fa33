//! Server-list pings per second, one fresh connection per ping, as launchers and server
//! lists do. Through Warden this measures the edge status cache, which is the point.

use std::time::Duration;

use anyhow::{bail, Result};
use warden_wire::{FrameDecoder, PacketReader, PacketWriter};

use super::{closed_loop, Rate};
use crate::proto::{connect, read_frame, write_all, Target, IO_TIMEOUT};

/// Handshake + Status Request, Status Response, Ping, Pong; all must be well formed.
pub async fn ping_once(t: &Target, payload: u64) -> Result<()> {
    let mut s = connect(t.addr).await?;
    write_all(&mut s, &t.status_prefix(), IO_TIMEOUT).await?;
    let mut dec = FrameDecoder::new();
    let resp = read_frame(&mut s, &mut dec, IO_TIMEOUT).await?;
    let mut r = PacketReader::new(&resp);
    if r.varint()? != 0x00 {
        bail!("expected status response");
    }
    // Cheap sanity only; parsing the JSON would bill client CPU to the path.
    if !r.string(32767)?.starts_with('{') {
        bail!("status response is not JSON");
    }
    let payload = payload as i64;
    let ping = PacketWriter::new(0x01).i64(payload).into_frame();
    write_all(&mut s, &ping, IO_TIMEOUT).await?;
    let pong = read_frame(&mut s, &mut dec, IO_TIMEOUT).await?;
    let mut r = PacketReader::new(&pong);
    if r.varint()? != 0x01 || r.i64()? != payload {
        bail!("bad pong");
    }
    Ok(())
}

pub async fn run(t: &Target, workers: usize, duration: Duration) -> Rate {
    let t = t.clone();
    closed_loop(workers, duration, move |seq| {
        let t = t.clone();
        async move { ping_once(&t, seq).await }
    })
    .await
}
