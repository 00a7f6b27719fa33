//! Logins routed per second: a fresh connection sends handshake + Login Start and waits
//! for proof the backend received them. Against the bench backend the name `ack` makes it
//! answer one byte; a real server answers with Encryption Request, Login Success or
//! Disconnect — any first byte means the login was delivered.

use std::time::Duration;

use anyhow::Result;

use super::{closed_loop, Rate};
use crate::proto::{connect, read_some, write_all, Target, IO_TIMEOUT};

pub async fn login_once(t: &Target, name: &str) -> Result<()> {
    let mut s = connect(t.addr).await?;
    write_all(&mut s, &t.login_prefix(name), IO_TIMEOUT).await?;
    let mut b = [0u8; 1];
    read_some(&mut s, &mut b, IO_TIMEOUT).await?;
    Ok(())
}

pub async fn run(t: &Target, workers: usize, duration: Duration, name: &str) -> Rate {
    let t = t.clone();
    let name = name.to_string();
    closed_loop(workers, duration, move |_| {
        let (t, name) = (t.clone(), name.clone());
        async move { login_once(&t, &name).await }
    })
    .await
}
