//! Accepting players: the edge's listening sockets, as a pingora service of its own.
//!
//! pingora keeps what it is good at: its fd table hands the listening sockets to a new
//! binary on a graceful upgrade (each under its address, as pingora's own listeners file
//! them, so either kind of process can take over from the other). Warden accepts on them
//! itself: an accepted socket is registered once, on the thread that accepted it, and goes
//! straight to its connection task with the peer address the accept returned. Taking it
//! out of pingora's buffered stream cost 7 system calls per connection (a dup, a second
//! registration, pingora's deregistration and close, two address lookups, and ours).
//!
//! Every runtime thread accepts on its own duplicate of each listening socket, so a
//! connection and its task stay on the thread that took it, and a busy thread simply
//! takes fewer.
#![allow(unsafe_code)] // duplicating an inherited descriptor; the block says why it is sound

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

use super::{connection, Edge};

/// Pending connections the kernel queues per listening socket (pingora's value).
const BACKLOG: i32 = 65_535;
/// Tries to bind an address still held by a previous process, a second apart.
const BIND_TRIES: u32 = 10;
/// Placements tried to find every runtime thread (each picks one at random).
const PROBES_PER_THREAD: usize = 32;

/// The edge's listening service: `addrs` are the listen addresses as configured.
pub struct EdgeService {
    edge: Arc<Edge>,
    addrs: Vec<String>,
    threads: usize,
}

impl EdgeService {
    /// `threads`: the runtime threads pingora gives this service (each gets an accept loop).
    pub fn new(edge: Arc<Edge>, addrs: Vec<String>, threads: usize) -> Self {
        Self {
            edge,
            addrs,
            threads: threads.max(1),
        }
    }
}

#[async_trait]
impl Service for EdgeService {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut loops = Vec::new();
        for addr in &self.addrs {
            let listener = match listener(addr, fds.as_ref()).await {
                Ok(l) => Arc::new(l),
                Err(e) => {
                    // No player could ever connect: fail loudly, let the supervisor retry.
                    error!(%addr, error = %e, "cannot listen for players; exiting");
                    std::process::exit(1);
                }
            };
            info!(%addr, "listening for players");
            loops.extend(on_every_thread(self.threads, &self.edge, &listener, &shutdown).await);
        }
        for l in loops {
            let _ = l.await;
        }
    }

    fn name(&self) -> &str {
        "edge"
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.addrs.clone())
    }
}

/// The listening socket for `addr`: the one an old process handed over, or a new one
/// (filed in the table for the next upgrade).
async fn listener(addr: &str, fds: Option<&ListenFds>) -> io::Result<std::net::TcpListener> {
    let Some(fds) = fds else {
        return bind(addr).await;
    };
    let inherited = fds.lock().get(addr).copied();
    if let Some(fd) = inherited {
        // SAFETY: the table keeps `fd` open for the life of this process (it is what the
        // next upgrade sends on); the duplicate is ours to own and close.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        let l = std::net::TcpListener::from(owned);
        l.set_nonblocking(true)?;
        info!(%addr, "took over the listening socket from the previous process");
        return Ok(l);
    }
    let l = bind(addr).await?;
    fds.lock().add(addr.to_string(), l.as_raw_fd());
    Ok(l)
}

async fn bind(addr: &str) -> io::Result<std::net::TcpListener> {
    let sa: SocketAddr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    })?;
    let mut tries = 0;
    loop {
        let socket = Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        match socket.bind(&sa.into()) {
            Ok(()) => {
                socket.listen(BACKLOG)?;
                socket.set_nonblocking(true)?;
                return Ok(socket.into());
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries + 1 < BIND_TRIES => {
                tries += 1;
                warn!(%addr, "address in use; trying again in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts one accept loop on each runtime thread. pingora places a task on a random
/// thread, so placements are tried until every thread has one (or the tries run out).
async fn on_every_thread(
    threads: usize,
    edge: &Arc<Edge>,
    listener: &Arc<std::net::TcpListener>,
    shutdown: &ShutdownWatch,
) -> Vec<tokio::task::JoinHandle<()>> {
    let taken: Arc<Mutex<HashSet<ThreadId>>> = Arc::default();
    let mut loops = Vec::new();
    for _ in 0..threads * PROBES_PER_THREAD {
        if taken.lock().len() >= threads {
            break;
        }
        let (placed, on) = tokio::sync::oneshot::channel();
        let (taken, edge, listener, shutdown) = (
            taken.clone(),
            edge.clone(),
            listener.clone(),
            shutdown.clone(),
        );
        loops.push(pingora_runtime::current_handle().spawn(async move {
            let first = taken.lock().insert(std::thread::current().id());
            let _ = placed.send(());
            if first {
                accept_loop(edge, &listener, shutdown).await;
            }
        }));
        let _ = on.await;
    }
    loops
}

/// Accepts until shutdown, each connection a task on this thread.
async fn accept_loop(
    edge: Arc<Edge>,
    listener: &std::net::TcpListener,
    mut shutdown: ShutdownWatch,
) {
    let listener = match listener.try_clone().and_then(TcpListener::from_std) {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot accept on this thread");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    debug!("no longer accepting players");
                    return;
                }
                continue;
            }
        };
        match accepted {
            Ok((client, peer)) => {
                if let Err(e) = client.set_nodelay(true) {
                    debug!(error = %e, "TCP_NODELAY on an accepted socket");
                }
                tokio::spawn(connection::handle(edge.clone(), client, peer));
            }
            // Out of descriptors: the connections holding them must end first.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                warn!(error = %e, "cannot accept: out of file descriptors");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => debug!(error = %e, "accept failed"),
        }
    }
}
