//! Results as a markdown table for people and JSON for tooling; both from one struct so
//! they can never disagree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::backend::StatsSnapshot;
use crate::modes::bulk::Bulk;
use crate::modes::echo::Echo;
use crate::modes::idle::Idle;
use crate::modes::Rate;

/// Everything measured on one path (direct or through Warden).
#[derive(Serialize, Debug, Default)]
pub struct PathResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_upload: Option<Bulk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_upload_single: Option<Bulk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_download: Option<Bulk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_download_single: Option<Bulk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo: Option<Echo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Idle>,
    /// Status requests the backend answered during the status mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_status_requests: Option<u64>,
    /// Logins the backend counted during the login mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_logins: Option<u64>,
    /// The proxy's CPU seconds per mode (Warden's, or a peer's): on a few shared cores the
    /// rates are CPU-bound, so cost per operation is the comparison that survives the
    /// client sharing the box.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub proxy_cpu_secs: BTreeMap<String, f64>,
    /// The bench process's CPU seconds per mode (load generator and backend together).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bench_cpu_secs: BTreeMap<String, f64>,
    /// Modes that failed outright, with the error.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, String>,
}

impl PathResult {
    /// No mode failed and no status ping or login erred: nothing to look into.
    pub fn clean(&self) -> bool {
        self.failures.is_empty()
            && [&self.status, &self.login]
                .iter()
                .all(|r| r.as_ref().is_none_or(|r| r.errors == 0))
    }
}

#[derive(Serialize, Debug)]
pub struct Params {
    pub duration_secs: u64,
    pub concurrency: usize,
    pub streams: usize,
    pub bulk_mib: u64,
    pub echo_trips: usize,
    pub sessions: usize,
    pub nofile_limit: u64,
    pub cpus: usize,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub params: Params,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warden_binary: Option<String>,
    pub direct: PathResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warden: Option<PathResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<StatsSnapshot>,
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".into(),
    }
}

fn ratio(d: Option<f64>, w: Option<f64>) -> String {
    match (d, w) {
        (Some(d), Some(w)) if d > 0.0 => format!("{:.2}×", w / d),
        _ => "–".into(),
    }
}

struct Table(String);

impl Table {
    fn new() -> Self {
        Self("| metric | direct | warden | warden/direct |\n|---|---:|---:|---:|\n".into())
    }

    /// Skipped when neither path measured it, so single-mode reports stay short.
    fn row(&mut self, name: &str, d: Option<f64>, w: Option<f64>, decimals: usize) {
        if d.is_none() && w.is_none() {
            return;
        }
        let _ = writeln!(
            self.0,
            "| {name} | {} | {} | {} |",
            fmt(d, decimals),
            fmt(w, decimals),
            ratio(d, w)
        );
    }

    /// A row whose value exists only for Warden and has no meaningful ratio.
    fn warden_only(&mut self, name: &str, w: Option<f64>, decimals: usize) {
        if w.is_none() {
            return;
        }
        let _ = writeln!(self.0, "| {name} | – | {} | – |", fmt(w, decimals));
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let d = &self.direct;
        let empty = PathResult::default();
        let w = self.warden.as_ref().unwrap_or(&empty);
        let p = &self.params;
        let mut t = Table::new();
        let rate = |r: &Option<Rate>| r.as_ref().map(|r| r.per_sec);
        let errs = |r: &Option<Rate>| r.as_ref().map(|r| r.errors as f64);
        let bulk = |b: &Option<Bulk>| b.as_ref().map(|b| b.mib_per_sec);
        let echo = |e: &Option<Echo>, f: fn(&Echo) -> f64| e.as_ref().map(f);

        let c = p.concurrency;
        t.row(
            &format!("status pings/s ({c} workers)"),
            rate(&d.status),
            rate(&w.status),
            0,
        );
        t.row("status errors", errs(&d.status), errs(&w.status), 0);
        let n = |v: Option<u64>| v.map(|v| v as f64);
        t.row(
            "status requests reaching the backend",
            n(d.backend_status_requests),
            n(w.backend_status_requests),
            0,
        );
        t.row(
            &format!("logins routed/s ({c} workers)"),
            rate(&d.login),
            rate(&w.login),
            0,
        );
        t.row("login errors", errs(&d.login), errs(&w.login), 0);
        t.row(
            "logins the backend counted",
            n(d.backend_logins),
            n(w.backend_logins),
            0,
        );
        let k = p.streams;
        t.row(
            &format!("bulk upload MiB/s ({k} streams)"),
            bulk(&d.bulk_upload),
            bulk(&w.bulk_upload),
            0,
        );
        t.row(
            "bulk upload MiB/s (1 stream)",
            bulk(&d.bulk_upload_single),
            bulk(&w.bulk_upload_single),
            0,
        );
        t.row(
            &format!("bulk download MiB/s ({k} streams)"),
            bulk(&d.bulk_download),
            bulk(&w.bulk_download),
            0,
        );
        t.row(
            "bulk download MiB/s (1 stream)",
            bulk(&d.bulk_download_single),
            bulk(&w.bulk_download_single),
            0,
        );
        t.row(
            "echo RTT p50 µs (64 B)",
            echo(&d.echo, |e| e.p50_us),
            echo(&w.echo, |e| e.p50_us),
            1,
        );
        t.row(
            "echo RTT p99 µs",
            echo(&d.echo, |e| e.p99_us),
            echo(&w.echo, |e| e.p99_us),
            1,
        );
        t.row(
            "echo RTT p99.9 µs",
            echo(&d.echo, |e| e.p999_us),
            echo(&w.echo, |e| e.p999_us),
            1,
        );
        if let (Some(de), Some(we)) = (&d.echo, &w.echo) {
            t.warden_only(
                "added latency p99 µs (warden − direct)",
                Some(we.p99_us - de.p99_us),
                1,
            );
        }
        let idle_open = |i: &Option<Idle>| i.as_ref().map(|i| i.opened as f64 / i.open_secs);
        if d.idle.is_some() || w.idle.is_some() {
            let sessions = p.sessions;
            t.row(
                &format!("idle sessions opened/s ({sessions})"),
                idle_open(&d.idle),
                idle_open(&w.idle),
                0,
            );
        }
        if let Some(i) = &w.idle {
            t.warden_only(
                &format!("warden RSS KiB per idle session ({} open)", i.opened),
                i.kib_per_session,
                2,
            );
            let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
            t.warden_only(
                "warden RSS MiB before idle sessions",
                mib(i.rss_before_kib),
                1,
            );
            t.warden_only("warden RSS MiB with idle sessions", mib(i.rss_after_kib), 1);
            t.warden_only(
                "warden RSS MiB 2 s after they closed",
                mib(i.rss_after_close_kib),
                1,
            );
            t.warden_only(
                "warden RSS MiB 10 s after they closed",
                mib(i.rss_after_close_10s_kib),
                1,
            );
        }
        let gib = |b: &Option<Bulk>| b.as_ref().map(|b| b.bytes as f64 / (1u64 << 30) as f64);
        // CPU cost per unit of work: the bench's own plus, through Warden, Warden's.
        let total = |r: &PathResult, key: &str| {
            let b = r.bench_cpu_secs.get(key)?;
            Some(b + r.proxy_cpu_secs.get(key).copied().unwrap_or(0.0))
        };
        let per_op = |r: &PathResult, key: &str, rate: &Option<Rate>| match rate {
            Some(rate) if rate.ok > 0 => total(r, key).map(|s| s * 1e6 / rate.ok as f64),
            _ => None,
        };
        let per_gib = |r: &PathResult, key: &str, b: &Option<Bulk>| {
            total(r, key).zip(gib(b)).map(|(s, g)| s / g)
        };
        t.row(
            "total CPU µs per status ping",
            per_op(d, "status", &d.status),
            per_op(w, "status", &w.status),
            1,
        );
        t.row(
            "total CPU µs per login",
            per_op(d, "login", &d.login),
            per_op(w, "login", &w.login),
            1,
        );
        t.row(
            "total CPU s per GiB uploaded",
            per_gib(d, "bulk_upload", &d.bulk_upload),
            per_gib(w, "bulk_upload", &w.bulk_upload),
            2,
        );
        let wcpu = |key: &str| w.proxy_cpu_secs.get(key).copied();
        let ops = |r: &Option<Rate>| r.as_ref().map(|r| r.ok as f64);
        t.warden_only(
            "  of which warden CPU µs per status ping",
            wcpu("status").zip(ops(&w.status)).map(|(s, n)| s * 1e6 / n),
            1,
        );
        t.warden_only(
            "  of which warden CPU µs per login",
            wcpu("login").zip(ops(&w.login)).map(|(s, n)| s * 1e6 / n),
            1,
        );
        t.warden_only(
            "  of which warden CPU s per GiB uploaded",
            wcpu("bulk_upload")
                .zip(gib(&w.bulk_upload))
                .map(|(s, g)| s / g),
            2,
        );
        let mut out = t.0;
        for (path, r) in [("direct", d), ("warden", w)] {
            for (mode, e) in &r.failures {
                let _ = writeln!(out, "\n**{path} {mode} failed:** {e}");
            }
            for (mode, rate) in [("status", &r.status), ("login", &r.login)] {
                if let Some(Rate {
                    first_error: Some(e),
                    errors,
                    ..
                }) = rate
                {
                    let _ = writeln!(out, "\n{path} {mode}: {errors} errors, first: {e}");
                }
            }
            if let Some(Idle {
                first_error: Some(e),
                open_errors,
                ..
            }) = &r.idle
            {
                let _ = writeln!(out, "\n{path} idle: {open_errors} open errors, first: {e}");
            }
        }
        out
    }
}
