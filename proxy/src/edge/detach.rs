//! Taking an accepted socket out of pingora's stream wrapper.
//!
//! pingora's L4 `Stream` is a buffered, type-erased wrapper. Warden needs the bare socket:
//! its relay waits on readiness and reads into a shared per-thread buffer, so an idle
//! session owns no buffer at all. The listener is configured with zero-sized L4 buffers,
//! so nothing can be left inside the wrapper; the socket is duplicated and the wrapper
//! dropped. That costs a dup, a second epoll registration, and pingora's deregistration
//! and close: pingora has no way to give its socket up.
#![allow(unsafe_code)] // system calls with no safe wrapper here; each block says why it is sound

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use tokio::net::TcpStream;

pub(super) fn into_tokio(session: Stream) -> io::Result<TcpStream> {
    let l4 = session
        .into_any()
        .downcast::<L4Stream>()
        .map_err(|_| io::Error::other("accepted stream is not plain TCP"))?;
    // SAFETY: the fd belongs to `l4`, which is alive for this whole borrow; the clone gets
    // its own descriptor, so dropping `l4` afterwards does not close the socket.
    let owned = unsafe { BorrowedFd::borrow_raw(l4.as_raw_fd()) }.try_clone_to_owned()?;
    drop(l4);
    // Neither O_NONBLOCK nor TCP_NODELAY needs setting again: the first lives on the open
    // file description the duplicate shares, and pingora set the second at accept.
    TcpStream::from_std(std::net::TcpStream::from(owned))
}
