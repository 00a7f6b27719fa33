//! Snapshot ids are their UTC creation time, `20260102T030405Z` (a `-N` suffix tells apart
//! two taken in the same second): they sort by age as plain strings, an operator can read
//! them, and a snapshot whose manifest is unreadable can still be dated by retention.

const DAY_MS: u64 = 86_400_000;

/// The id for a snapshot taken at `unix_ms` (`n` > 0 adds a `-n` suffix).
pub(crate) fn new_id(unix_ms: u64, n: u32) -> String {
    let days = unix_ms / DAY_MS;
    let secs = (unix_ms % DAY_MS) / 1000;
    let (y, m, d) = civil_from_days(days as i64);
    let base = format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if n == 0 {
        base
    } else {
        format!("{base}-{n}")
    }
}

/// When the snapshot `id` was taken (to the second), or None if it is not an id.
pub fn id_unix_ms(id: &str) -> Option<u64> {
    let (base, suffix) = match id.split_once('-') {
        Some((b, s)) => (b, Some(s)),
        None => (id, None),
    };
    if suffix.is_some_and(|s| s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit())) {
        return None;
    }
    let b = base.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = base.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    let days = u64::try_from(days).ok()?;
    Some(days * DAY_MS + (hh * 3600 + mm * 60 + ss) * 1000)
}

/// Sorts ids by age: time, then suffix (`…Z-10` after `…Z-9`).
pub(crate) fn order_key(id: &str) -> (u64, u32) {
    let n = id
        .split_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    (id_unix_ms(id).unwrap_or(0), n)
}

/// Whether `id` is a well-formed snapshot id (safe as a key segment).
pub(crate) fn is_id(id: &str) -> bool {
    id_unix_ms(id).is_some()
}

// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_utc_times_and_round_trip() {
        // 2026-01-02 03:04:05 UTC
        let t = 1_767_323_045_000;
        assert_eq!(new_id(t + 999, 0), "20260102T030405Z");
        assert_eq!(new_id(t, 2), "20260102T030405Z-2");
        assert_eq!(id_unix_ms("20260102T030405Z"), Some(t));
        assert_eq!(id_unix_ms("20260102T030405Z-2"), Some(t));
        assert_eq!(new_id(0, 0), "19700101T000000Z");
        assert!(order_key("20260102T030405Z-10") > order_key("20260102T030405Z-9"));
        assert!(order_key("20260102T030405Z-1") > order_key("20260102T030405Z"));
        assert!(order_key("20260102T030406Z") > order_key("20260102T030405Z-9"));
        assert_eq!(new_id(951_782_400_000, 0), "20000229T000000Z");
        for bad in [
            "",
            "x",
            "20260102T030405",
            "20261302T030405Z",
            "20260102T250405Z",
            "20260102T030405Z-",
            "20260102T030405Z-a",
            "../../etc",
            "2026010xT030405Z",
        ] {
            assert!(!is_id(bad), "{bad} accepted");
        }
        // every day of a few years round-trips
        for day in 19_000..20_500u64 {
            let ms = day * DAY_MS + 12_345_000;
            assert_eq!(id_unix_ms(&new_id(ms, 0)), Some(ms));
        }
    }
}
