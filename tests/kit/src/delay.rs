//! A long link on one machine: relays that hold every byte (TCP) or datagram (UDP) for a
//! fixed one-way delay before passing it on, and can drop a share of datagrams. The
//! kernel here has no `sch_netem`, so this is how a test gives the edge↔node path a real
//! round-trip time. Each relay runs on its own thread and stops when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A running relay; dropping it stops it.
pub struct Relay {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub listen: SocketAddr,
    /// The share of datagrams dropped (a UDP relay's), as `f64` bits.
    loss: Arc<AtomicU64>,
    /// Connections accepted (a TCP relay's).
    accepted: Arc<AtomicU64>,
}

impl Relay {
    /// From now on, drops this share of datagrams (0.0: none). UDP relays only.
    pub fn set_loss(&self, loss: f64) {
        self.loss.store(loss.to_bits(), Ordering::Relaxed);
    }

    /// Connections accepted so far (TCP relays; a UDP relay counts none): whether
    /// anything crossed the long path.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn<F>(listen: SocketAddr, loss: Arc<AtomicU64>, accepted: Arc<AtomicU64>, run: F) -> Relay
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            tokio::select! {
                _ = run => {}
                _ = stopped => {}
            }
        });
    });
    Relay {
        stop: Some(stop),
        thread: Some(thread),
        listen,
        loss,
        accepted,
    }
}

/// TCP from `listen` to `to`, every byte held `one_way` in each direction.
pub fn tcp(listen: SocketAddr, to: SocketAddr, one_way: Duration) -> Relay {
    let std = std::net::TcpListener::bind(listen).expect("bind the TCP delay relay");
    std.set_nonblocking(true).expect("nonblocking");
    let listen = std.local_addr().expect("relay address");
    let accepted = Arc::new(AtomicU64::new(0));
    let counted = accepted.clone();
    spawn(listen, Arc::default(), accepted, async move {
        let Ok(l) = TcpListener::from_std(std) else {
            return;
        };
        while let Ok((client, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                // The connection itself takes a round trip to reach the other side.
                tokio::time::sleep(one_way).await;
                let Ok(server) = TcpStream::connect(to).await else {
                    return;
                };
                tokio::time::sleep(one_way).await;
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(delayed(cr, sw, one_way), delayed(sr, cw, one_way));
            });
        }
    })
}

/// Copies `from` to `to`, each chunk written `delay` after it was read, in order.
async fn delayed<R, W>(mut from: R, mut to: W, delay: Duration)
where
    R: AsyncReadExt + Unpin + Send + 'static,
    W: AsyncWriteExt + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if bytes.is_empty() || to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
            || n == 0
        {
            break;
        }
    }
    let _ = writer.await;
}

/// UDP from `listen` to `to`, every datagram held `one_way` in each direction, and a
/// `loss` share of those going to `to` dropped at random (0.0: none; see [`Relay::set_loss`]).
pub fn udp(listen: SocketAddr, to: SocketAddr, one_way: Duration, loss: f64) -> Relay {
    let share = Arc::new(AtomicU64::new(loss.to_bits()));
    let std = std::net::UdpSocket::bind(listen).expect("bind the UDP delay relay");
    std.set_nonblocking(true).expect("nonblocking");
    let listen = std.local_addr().expect("relay address");
    let loss = share.clone();
    spawn(listen, share, Arc::default(), async move {
        let Ok(front) = UdpSocket::from_std(std) else {
            return;
        };
        let front = Arc::new(front);
        let mut peers: HashMap<SocketAddr, mpsc::UnboundedSender<(Instant, Vec<u8>)>> =
            HashMap::new();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(listen.port());
        let mut drop_it = move || {
            // xorshift: deterministic per port, no extra crate.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1_000_000) as f64 / 1_000_000.0 < f64::from_bits(loss.load(Ordering::Relaxed))
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = front.recv_from(&mut buf).await else {
                return;
            };
            let forward = match peers.get(&from) {
                Some(tx) => tx.clone(),
                None => {
                    let Ok(s) = UdpSocket::bind("127.0.0.1:0").await else {
                        continue;
                    };
                    if s.connect(to).await.is_err() {
                        continue;
                    }
                    let s = Arc::new(s);
                    // Each direction is one ordered queue: datagrams leave in the order
                    // they came, each `one_way` after it arrived (a link delays, it does
                    // not reorder).
                    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                    let up = s.clone();
                    tokio::spawn(async move {
                        while let Some((due, bytes)) = rx.recv().await {
                            tokio::time::sleep_until(due).await;
                            let _ = up.send(&bytes).await;
                        }
                    });
                    let (back_tx, mut back_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                    let front_out = front.clone();
                    tokio::spawn(async move {
                        while let Some((due, bytes)) = back_rx.recv().await {
                            tokio::time::sleep_until(due).await;
                            let _ = front_out.send_to(&bytes, from).await;
                        }
                    });
                    let down = s.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok(n) = down.recv(&mut buf).await {
                            let due = Instant::now() + one_way;
                            if back_tx.send((due, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    });
                    peers.insert(from, tx.clone());
                    tx
                }
            };
            if drop_it() {
                continue;
            }
            let _ = forward.send((Instant::now() + one_way, buf[..n].to_vec()));
        }
    })
}
