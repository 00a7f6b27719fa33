//! The file-descriptor limit, the real cap on players.
//!
//! Every player costs two descriptors (their socket and the backend's), every connection
//! still in its handshake one. At a common default soft limit of 1024, a few thousand idle
//! connections used to exhaust the process: accept failed with "Too many open files" and
//! real joins waited seconds. So at start Warden raises its soft `RLIMIT_NOFILE` to the hard
//! limit, says how many players that allows, and caps client connections below it: the
//! edge sheds the oldest pre-routing connections before the limit is reached (see
//! `warden_proxy::shed`), never the other way round.
#![allow(unsafe_code)] // system calls with no safe wrapper here; each block says why it is sound

use std::io;

/// Descriptors kept for everything but client connections and their backends: listeners,
/// the store, status fetches and readiness probes, webhooks, logs.
const BASE_RESERVE: u64 = 128;

/// The limit before and after raising it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    /// The soft limit Warden was started with.
    pub before: u64,
    /// The soft limit now in force.
    pub limit: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or to the kernel's `nr_open` when the
/// hard limit is unlimited).
pub fn raise() -> io::Result<Descriptors> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) only writes into the struct passed, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (before, hard): (u64, u64) = (r.rlim_cur, r.rlim_max);
    let target = if hard == libc::RLIM_INFINITY {
        nr_open().unwrap_or(1 << 20)
    } else {
        hard
    };
    if target <= before {
        return Ok(Descriptors {
            before,
            limit: before,
            hard,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: r.rlim_max,
    };
    // SAFETY: setrlimit(2) only reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Descriptors {
        before,
        limit: target,
        hard,
    })
}

/// The most descriptors a process may have open (Linux), the ceiling of an unlimited
/// hard limit.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Descriptors to keep aside when `api_connections` API clients may be connected.
pub fn reserve(api_connections: usize) -> u64 {
    BASE_RESERVE + api_connections as u64
}

/// Client connections `limit` descriptors allow: two each, after the reserve.
pub fn capacity(limit: u64, reserve: u64) -> usize {
    usize::try_from(limit.saturating_sub(reserve) / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_counts_two_descriptors_per_player() {
        assert_eq!(capacity(1024, reserve(0)), 448);
        assert_eq!(capacity(1024, reserve(256)), 320);
        assert_eq!(capacity(100, reserve(0)), 1);
        assert_eq!(capacity(1 << 20, reserve(256)), 524_096);
    }

    #[test]
    fn raising_keeps_or_raises_the_soft_limit() {
        let d = raise().unwrap();
        assert!(d.limit >= d.before);
        assert!(d.limit <= d.hard || d.hard == libc::RLIM_INFINITY);
        // A second call finds the limit already raised.
        assert_eq!(raise().unwrap().before, d.limit);
    }
}
