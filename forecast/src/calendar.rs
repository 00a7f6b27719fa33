//! Calendar facts the model uses as flags: German public holidays (computed,
//! including the Easter-based ones, so no table goes stale) and event days
//! such as Minecraft releases, which come from configuration because they are
//! announced, not computed.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Days since 1970-01-01 for a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Easter Sunday (Gregorian, anonymous algorithm) as days since the epoch.
pub fn easter_sunday(year: i64) -> i64 {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    days_from_civil(year, month as u32, day as u32)
}

/// The nine nationwide German public holidays of `year`, as epoch days.
pub fn german_holidays(year: i64) -> Vec<i64> {
    let easter = easter_sunday(year);
    vec![
        days_from_civil(year, 1, 1),   // Neujahr
        easter - 2,                    // Karfreitag
        easter + 1,                    // Ostermontag
        days_from_civil(year, 5, 1),   // Tag der Arbeit
        easter + 39,                   // Christi Himmelfahrt
        easter + 50,                   // Pfingstmontag
        days_from_civil(year, 10, 3),  // Tag der Deutschen Einheit
        days_from_civil(year, 12, 25), // 1. Weihnachtstag
        days_from_civil(year, 12, 26), // 2. Weihnachtstag
    ]
}

/// Parses `YYYY-MM-DD` into epoch days.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Event configuration, e.g. `minecraft_releases = ["2024-06-13"]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// Release days of Minecraft versions; demand jumps on and after them.
    #[serde(default)]
    pub minecraft_releases: Vec<String>,
    /// Other dated events (tournaments, community days).
    #[serde(default)]
    pub events: Vec<String>,
    /// How many days from the event day on the flag stays set.
    #[serde(default = "default_event_days")]
    pub event_days: u32,
}

fn default_event_days() -> u32 {
    3
}

impl EventConfig {
    /// Reads the TOML event file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}

/// Flags per hour: German public holiday, configured event window.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    holidays: HashSet<i64>,
    events: HashSet<i64>,
}

impl Calendar {
    /// German holidays for 1990–2100 plus the configured events.
    pub fn new(events: &EventConfig) -> Result<Self> {
        let holidays = (1990..=2100).flat_map(german_holidays).collect();
        let mut ev = HashSet::new();
        for s in events.minecraft_releases.iter().chain(&events.events) {
            let day =
                parse_date(s).ok_or_else(|| Error::Config(format!("bad event date {s:?}")))?;
            for k in 0..i64::from(events.event_days.max(1)) {
                ev.insert(day + k);
            }
        }
        Ok(Calendar {
            holidays,
            events: ev,
        })
    }

    /// Holidays only; the default when no event file is given.
    pub fn german() -> Self {
        Calendar {
            holidays: (1990..=2100).flat_map(german_holidays).collect(),
            events: HashSet::new(),
        }
    }

    /// Whether the hour (epoch hours, UTC) falls on a German public holiday.
    pub fn is_holiday(&self, hour: i64) -> bool {
        self.holidays.contains(&hour.div_euclid(24))
    }

    /// Whether the hour falls inside a configured event window.
    pub fn is_event(&self, hour: i64) -> bool {
        self.events.contains(&hour.div_euclid(24))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_roundtrip() {
        for d in [-1000, 0, 1, 59, 60, 20_000, 20_527] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn easter_dates() {
        assert_eq!(civil_from_days(easter_sunday(2024)), (2024, 3, 31));
        assert_eq!(civil_from_days(easter_sunday(2025)), (2025, 4, 20));
        assert_eq!(civil_from_days(easter_sunday(2019)), (2019, 4, 21));
        assert_eq!(civil_from_days(easter_sunday(2038)), (2038, 4, 25));
    }

    #[test]
    fn german_holidays_2025() {
        let days: Vec<_> = german_holidays(2025)
            .into_iter()
            .map(civil_from_days)
            .collect();
        assert!(days.contains(&(2025, 4, 18))); // Karfreitag
        assert!(days.contains(&(2025, 4, 21))); // Ostermontag
        assert!(days.contains(&(2025, 5, 29))); // Himmelfahrt
        assert!(days.contains(&(2025, 6, 9))); // Pfingstmontag
        assert!(days.contains(&(2025, 10, 3)));
        let cal = Calendar::german();
        let hour = days_from_civil(2025, 12, 25) * 24 + 13;
        assert!(cal.is_holiday(hour));
        assert!(!cal.is_holiday(hour + 48));
    }

    #[test]
    fn event_windows() {
        let cfg = EventConfig {
            minecraft_releases: vec!["2024-06-13".into()],
            events: vec![],
            event_days: 2,
        };
        let cal = Calendar::new(&cfg).unwrap();
        let d = days_from_civil(2024, 6, 13);
        assert!(cal.is_event(d * 24));
        assert!(cal.is_event((d + 1) * 24 + 23));
        assert!(!cal.is_event((d + 2) * 24));
        let bad = EventConfig {
            minecraft_releases: vec!["13/06/2024".into()],
            ..Default::default()
        };
        assert!(Calendar::new(&bad).is_err());
    }
}
