//! The kernel fast path for bulk transfers: socket → pipe → socket with `splice(2)`.
//!
//! Moving pages through a pipe instead of copying them into Warden and back out saves
//! two copies per byte. A pipe costs two descriptors and kernel memory, so only a
//! direction that has shown bulk traffic gets one (see [`crate::relay`]).
#![allow(unsafe_code)] // system calls with no safe wrapper here; each block says why it is sound

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// How much one splice call may move; also the pipe's requested capacity.
const PIPE_BYTES: usize = 1 << 20;

pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into `fds` on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // A larger pipe moves more per call; the kernel may refuse (pipe-max-size), which
        // only costs speed.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as i32,
            )
        };
        Ok(pipe)
    }
}

fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors, null offsets (both ends are sockets or pipes).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Splices `src` into `dst` until `src` ends, then shuts down `dst`'s sending half.
/// `moved` is told every chunk that reached `dst`.
pub(crate) async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: Pipe,
    moved: &(dyn Fn(usize) + Sync),
) -> io::Result<()> {
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let (pipe_r, pipe_w) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
    loop {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
        let n = match src.try_io(Interest::READABLE, || splice(src_fd, pipe_w, PIPE_BYTES)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                src.readable().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            let _ = SockRef::from(dst).shutdown(Shutdown::Write);
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            match dst.try_io(Interest::WRITABLE, || splice(pipe_r, dst_fd, left)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    left -= m;
                    moved(m);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}
