//! Readers for the demand files in the formats of `shared/data/demand`:
//! Steam-style hourly player counts per app and PLAICraft-style session logs.
//! Both end up as hourly series; the session log also as a minute trace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::calendar::days_from_civil;
use crate::error::{Error, Result};
use crate::series::{interpolate_missing, HourlySeries, MinuteTrace};

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn perr(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::Parse {
        path: PathBuf::from(path),
        line,
        message: message.into(),
    }
}

/// Parses `YYYY-MM-DD HH:MM[:SS]` to unix seconds (UTC).
fn parse_iso(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once([' ', 'T'])?;
    let day = crate::calendar::parse_date(date)?;
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
    Some(day * 86_400 + h * 3600 + m * 60 + sec)
}

/// Parses `dd/mm/yyyy HH:MM` to unix minutes (UTC).
fn parse_dmy_minutes(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('/');
    let day: u32 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let year: i64 = d.next()?.parse().ok()?;
    let (h, m) = time.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 1440 + h * 60 + m)
}

/// Reads `AppID,Date,AvgPlayers`: timestamps floored to the hour, several
/// samples in one hour averaged, values ≤ 0 and absent hours treated as
/// missing and interpolated. Series keep the file's order.
pub fn read_steam(path: &Path) -> Result<Vec<HourlySeries>> {
    let text = read(path)?;
    let mut order: Vec<String> = Vec::new();
    let mut samples: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if i == 0 || line.is_empty() {
            continue;
        }
        let mut f = line.split(',');
        let (app, date, val) = match (f.next(), f.next(), f.next()) {
            (Some(a), Some(d), Some(v)) => (a.trim(), d, v),
            _ => return Err(perr(path, i + 1, "expected AppID,Date,AvgPlayers")),
        };
        let secs = parse_iso(date).ok_or_else(|| perr(path, i + 1, "bad Date"))?;
        let v: f64 = val
            .trim()
            .parse()
            .map_err(|_| perr(path, i + 1, "bad AvgPlayers"))?;
        if !samples.contains_key(app) {
            order.push(app.to_string());
        }
        samples
            .entry(app.to_string())
            .or_default()
            .push((secs.div_euclid(3600), v));
    }
    let mut out = Vec::with_capacity(order.len());
    for app in order {
        let pts = samples.remove(&app).unwrap_or_default();
        let (lo, hi) = pts.iter().fold((i64::MAX, i64::MIN), |(a, b), (h, _)| {
            (a.min(*h), b.max(*h))
        });
        if lo > hi {
            continue;
        }
        let n = (hi - lo + 1) as usize;
        let mut sum = vec![0.0; n];
        let mut cnt = vec![0u32; n];
        for (h, v) in pts {
            if v > 0.0 {
                sum[(h - lo) as usize] += v;
                cnt[(h - lo) as usize] += 1;
            }
        }
        let mut values: Vec<f64> = sum
            .iter()
            .zip(&cnt)
            .map(|(s, c)| if *c > 0 { s / f64::from(*c) } else { f64::NAN })
            .collect();
        interpolate_missing(&mut values);
        out.push(HourlySeries {
            name: format!("steam-{app}"),
            start_hour: lo,
            values,
        });
    }
    if out.is_empty() {
        return Err(perr(path, 1, "no series"));
    }
    Ok(out)
}

/// One play session, unix minutes, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub start: i64,
    pub end: i64,
}

/// Reads `player,start_time,end_time` (dd/mm/yyyy HH:MM). Sessions without
/// an end or with an end before their start are skipped; zero-length ones count as one minute,
/// since the player did connect.
pub fn read_sessions(path: &Path) -> Result<Vec<Session>> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if i == 0 || line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            return Err(perr(path, i + 1, "expected player,start_time,end_time"));
        }
        // a session still open when the log was taken has no end: unusable
        if f[2].trim().is_empty() {
            continue;
        }
        let s = parse_dmy_minutes(f[1]).ok_or_else(|| perr(path, i + 1, "bad start_time"))?;
        let e = parse_dmy_minutes(f[2]).ok_or_else(|| perr(path, i + 1, "bad end_time"))?;
        if e < s {
            continue;
        }
        out.push(Session {
            start: s,
            end: e.max(s + 1),
        });
    }
    if out.is_empty() {
        return Err(perr(path, 1, "no sessions"));
    }
    out.sort_by_key(|s| s.start);
    Ok(out)
}

/// Minute-resolution concurrency over whole days (UTC midnight to midnight),
/// so that hourly and daily features line up.
pub fn session_concurrency(name: &str, sessions: &[Session]) -> MinuteTrace {
    let lo = sessions.iter().map(|s| s.start).min().unwrap_or(0);
    let hi = sessions.iter().map(|s| s.end).max().unwrap_or(0);
    let lo = lo.div_euclid(1440) * 1440;
    let hi = (hi + 1439).div_euclid(1440) * 1440;
    let mut delta = vec![0i64; (hi - lo + 1) as usize];
    for s in sessions {
        delta[(s.start - lo) as usize] += 1;
        delta[(s.end - lo) as usize] -= 1;
    }
    let mut cur = 0i64;
    let values = delta[..(hi - lo) as usize]
        .iter()
        .map(|d| {
            cur += d;
            cur as f64
        })
        .collect();
    MinuteTrace {
        name: name.to_string(),
        start_minute: lo,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_iso("1970-01-01 01:00:05"), Some(3605));
        assert_eq!(parse_dmy_minutes("02/01/1970 00:01"), Some(1441));
        assert_eq!(parse_dmy_minutes("32/01/1970 00:01"), None);
    }

    #[test]
    fn steam_file_resamples_and_interpolates() {
        let dir = std::env::temp_dir().join(format!("wf-steam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.csv");
        std::fs::write(
            &p,
            "AppID,Date,AvgPlayers\r\n7,1970-01-01 00:01:50,10\r\n7,1970-01-01 01:02:00,0\r\n\
             7,1970-01-01 02:00:10,30\r\n7,1970-01-01 02:40:10,50\r\n8,1970-01-01 00:00:00,1\r\n",
        )
        .unwrap();
        let s = read_steam(&p).unwrap();
        assert_eq!(s[0].name, "steam-7");
        assert_eq!(s[0].values, vec![10.0, 25.0, 40.0]);
        assert_eq!(s[1].values, vec![1.0]);
        std::fs::write(&p, "AppID,Date,AvgPlayers\n7,notadate,1\n").unwrap();
        assert!(matches!(read_steam(&p), Err(Error::Parse { line: 2, .. })));
    }

    #[test]
    fn sessions_to_concurrency() {
        let ss = [
            Session {
                start: 1440 + 10,
                end: 1440 + 20,
            },
            Session {
                start: 1440 + 15,
                end: 1440 + 16,
            },
        ];
        let t = session_concurrency("x", &ss);
        assert_eq!(t.start_minute, 1440);
        assert_eq!(t.values.len(), 1440);
        assert_eq!(t.values[9], 0.0);
        assert_eq!(t.values[15], 2.0);
        assert_eq!(t.values[19], 1.0);
        assert_eq!(t.values[20], 0.0);
        let h = t.hourly_mean();
        assert!((h.values[0] - 11.0 / 60.0).abs() < 1e-12);
    }
}
