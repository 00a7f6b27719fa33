//! The figures `peers` publishes, each read from one path's results of one round: rates,
//! added latency, memory, and the proxy's CPU per unit of work.

use crate::modes::Rate;
use crate::report::{Params, PathResult};

/// One figure: how to read it from a path's results (given the same round's direct
/// results, for figures that are differences), and which way is better.
pub struct Figure {
    pub key: &'static str,
    pub label: String,
    pub higher_is_better: bool,
    pub decimals: usize,
    pub get: fn(&PathResult, &PathResult) -> Option<f64>,
}

fn rate(r: &Option<Rate>) -> Option<f64> {
    r.as_ref().map(|r| r.per_sec)
}

/// The proxy's CPU for `key` divided by `units` of work, times `scale`.
fn cpu_per(r: &PathResult, key: &str, units: Option<f64>, scale: f64) -> Option<f64> {
    let secs = r.proxy_cpu_secs.get(key)?;
    units.filter(|u| *u > 0.0).map(|u| secs * scale / u)
}

fn ops(r: &Option<Rate>) -> Option<f64> {
    r.as_ref().map(|r| r.ok as f64)
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

pub fn figures(p: &Params) -> Vec<Figure> {
    let (c, k, n) = (p.concurrency, p.streams, p.sessions);
    let fig = |key, label: String, higher_is_better, decimals, get| Figure {
        key,
        label,
        higher_is_better,
        decimals,
        get,
    };
    vec![
        fig(
            "status_per_sec",
            format!("status pings/s ({c} workers)"),
            true,
            0,
            |r, _| rate(&r.status),
        ),
        fig(
            "logins_per_sec",
            format!("logins answered/s ({c} workers)"),
            true,
            0,
            |r, _| rate(&r.login),
        ),
        fig(
            "logins_at_backend_per_sec",
            "logins reaching the backend/s".into(),
            true,
            0,
            |r, _| {
                let secs = r.login.as_ref()?.secs;
                r.backend_logins.map(|n| n as f64 / secs)
            },
        ),
        fig(
            "bulk_upload_mib_s",
            format!("bulk upload MiB/s ({k} streams)"),
            true,
            0,
            |r, _| r.bulk_upload.as_ref().map(|b| b.mib_per_sec),
        ),
        fig(
            "bulk_download_single_mib_s",
            "bulk download MiB/s (1 stream)".into(),
            true,
            0,
            |r, _| r.bulk_download_single.as_ref().map(|b| b.mib_per_sec),
        ),
        fig(
            "echo_added_p50_us",
            "added echo latency p50 µs (path − direct)".into(),
            false,
            1,
            |r, d| Some(r.echo.as_ref()?.p50_us - d.echo.as_ref()?.p50_us),
        ),
        fig(
            "echo_added_p99_us",
            "added echo latency p99 µs (path − direct)".into(),
            false,
            1,
            |r, d| Some(r.echo.as_ref()?.p99_us - d.echo.as_ref()?.p99_us),
        ),
        fig(
            "rss_kib_per_idle_session",
            format!("RSS KiB per idle session ({n} sessions)"),
            false,
            2,
            |r, _| r.idle.as_ref()?.kib_per_session,
        ),
        fig(
            "rss_before_mib",
            "RSS MiB before load".into(),
            false,
            1,
            |r, _| mib(r.idle.as_ref()?.rss_before_kib),
        ),
        fig(
            "rss_2s_after_close_mib",
            "RSS MiB 2 s after the idle sessions closed".into(),
            false,
            1,
            |r, _| mib(r.idle.as_ref()?.rss_after_close_kib),
        ),
        fig(
            "rss_10s_after_close_mib",
            "RSS MiB 10 s after they closed".into(),
            false,
            1,
            |r, _| mib(r.idle.as_ref()?.rss_after_close_10s_kib),
        ),
        fig(
            "cpu_us_per_login",
            "proxy CPU µs per login".into(),
            false,
            1,
            |r, _| cpu_per(r, "login", ops(&r.login), 1e6),
        ),
        fig(
            "cpu_us_per_status",
            "proxy CPU µs per status ping".into(),
            false,
            1,
            |r, _| cpu_per(r, "status", ops(&r.status), 1e6),
        ),
        fig(
            "cpu_ms_per_gib",
            "proxy CPU ms per GiB (1 stream up)".into(),
            false,
            0,
            |r, _| {
                let gib = r
                    .bulk_upload_single
                    .as_ref()
                    .map(|b| b.bytes as f64 / (1u64 << 30) as f64);
                cpu_per(r, "bulk_upload_single", gib, 1e3)
            },
        ),
    ]
}
