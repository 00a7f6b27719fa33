//! The few process facts the bench needs from Linux: descriptor limits and another
//! process's memory and CPU, read from /proc so no agent runs inside Warden.

use anyhow::{bail, Context, Result};

/// Raises RLIMIT_NOFILE so `want` descriptors fit; Warden, spawned afterwards, inherits it.
/// Returns the soft limit in force afterwards, which may be lower than asked when the
/// hard limit cannot be raised (not root).
pub fn raise_nofile(want: u64) -> Result<u64> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if cur.rlim_cur >= want {
        return Ok(cur.rlim_cur);
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(cur.rlim_max);
    let attempts = [
        libc::rlimit {
            rlim_cur: want.min(nr_open),
            rlim_max: cur.rlim_max.max(want.min(nr_open)),
        },
        libc::rlimit {
            rlim_cur: want.min(cur.rlim_max),
            rlim_max: cur.rlim_max,
        },
    ];
    for lim in attempts {
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            return Ok(lim.rlim_cur);
        }
    }
    Ok(cur.rlim_cur)
}

/// Resident set size of `pid` in KiB.
pub fn vmrss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")
}

/// User + system CPU seconds `pid` has used, all threads included.
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name may contain spaces; fields are counted after its closing paren.
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok((utime + stime) as f64 / hz)
}
