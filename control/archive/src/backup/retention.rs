//! Which snapshots to keep: the newest `last`, and the newest of each of the `hourly` most
//! recent hours, `daily` days and `weekly` weeks that have a snapshot (UTC; weeks start on
//! Monday), as restic's `forget --keep-*` does. Periods count only when they hold a
//! snapshot, so a server asleep for a month keeps its last backups: time passing alone
//! never deletes one. The newest snapshot is always kept.

use std::collections::BTreeSet;

const HOUR_MS: u64 = 3_600_000;
/// Which period (hour, day, week number) a time in unix ms falls in.
type Period = fn(u64) -> u64;
const DAY_MS: u64 = 24 * HOUR_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The most recent snapshots, whatever their age (operator and before-restore backups
    /// taken close together all survive a while).
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            last: 5,
            hourly: 24,
            daily: 7,
            weekly: 4,
        }
    }
}

impl Retention {
    /// The ids to keep out of `snapshots` (id, creation time in unix ms).
    pub fn keep(&self, snapshots: &[(String, u64)]) -> BTreeSet<String> {
        let mut newest_first: Vec<&(String, u64)> = snapshots.iter().collect();
        newest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let mut keep = BTreeSet::new();
        if let Some((id, _)) = newest_first.first() {
            keep.insert(id.clone());
        }
        for (id, _) in newest_first.iter().take(self.last as usize) {
            keep.insert(id.clone());
        }
        let rules: [(u32, Period); 3] = [
            (self.hourly, |t| t / HOUR_MS),
            (self.daily, |t| t / DAY_MS),
            // 1970-01-01 was a Thursday: shift by 3 days so weeks start on Monday
            (self.weekly, |t| (t / DAY_MS + 3) / 7),
        ];
        for (n, period) in rules {
            let mut last_period = None;
            let mut kept = 0;
            for (id, t) in &newest_first {
                if kept >= n {
                    break;
                }
                let p = period(*t);
                if last_period != Some(p) {
                    last_period = Some(p);
                    kept += 1;
                    keep.insert(id.clone());
                }
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-05 00:00 UTC, a Monday.
    const MONDAY: u64 = 1_767_571_200_000;

    fn at(day: u64, hour: u64, min: u64) -> u64 {
        MONDAY + day * DAY_MS + hour * HOUR_MS + min * 60_000
    }

    fn snaps(times: &[(&str, u64)]) -> Vec<(String, u64)> {
        times.iter().map(|(i, t)| (i.to_string(), *t)).collect()
    }

    fn ids(set: BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn each_rule_keeps_the_newest_of_its_periods() {
        let s = snaps(&[
            ("a", at(0, 9, 10)),  // Mon wk1
            ("b", at(6, 23, 0)),  // Sun wk1
            ("c", at(7, 1, 0)),   // Mon wk2
            ("d", at(8, 10, 0)),  // Tue
            ("e", at(8, 10, 30)), // Tue, same hour as d
            ("f", at(8, 11, 5)),  // Tue
            ("g", at(8, 11, 50)), // Tue, newest
        ]);
        let only = |last, hourly, daily, weekly| {
            ids(Retention {
                last,
                hourly,
                daily,
                weekly,
            }
            .keep(&s))
        };
        // nothing asked: the newest survives anyway
        assert_eq!(only(0, 0, 0, 0), ["g"]);
        assert_eq!(only(3, 0, 0, 0), ["e", "f", "g"]);
        // hours 11 (g), 10 (e: newest of its hour), 1 on Mon wk2 (c)
        assert_eq!(only(0, 3, 0, 0), ["c", "e", "g"]);
        // days: Tue (g), Mon wk2 (c), Sun (b)
        assert_eq!(only(0, 0, 3, 0), ["b", "c", "g"]);
        // weeks: wk2 (g), wk1 (b: Sunday is the week's newest)
        assert_eq!(only(0, 0, 0, 2), ["b", "g"]);
        assert_eq!(only(0, 0, 0, 9), ["b", "g"]);
        // the union
        assert_eq!(only(1, 2, 2, 2), ["b", "c", "e", "g"]);
    }

    #[test]
    fn defaults_over_forty_days_of_half_hourly_snapshots() {
        let mut s = Vec::new();
        for i in 0..(40 * 48u64) {
            s.push((format!("s{i:05}"), at(0, 0, 15 + 30 * i)));
        }
        let keep = Retention::default().keep(&s);
        let newest = 40 * 48 - 1;
        let mut want = BTreeSet::new();
        // last 5
        for i in newest - 4..=newest {
            want.insert(i);
        }
        // 24 hourly: the :45 snapshot of each of the last 24 hours
        for h in 0..24 {
            want.insert(newest - 2 * h);
        }
        // 7 daily: the 23:45 snapshot of each of the last 7 days
        for d in 0..7 {
            want.insert(newest - 48 * d);
        }
        // 4 weekly: the newest of this week (day 39, a Friday), then the Sunday 23:45 of
        // the three weeks before (days 34, 27, 20; day 34 is also a daily)
        for day in [34u64, 27, 20] {
            want.insert(day * 48 + 47);
        }
        let want: BTreeSet<String> = want.into_iter().map(|i| format!("s{i:05}")).collect();
        assert_eq!(keep, want);
        // 5 last + 21 more hourly + 6 more daily + 2 more weekly
        assert_eq!(keep.len(), 34);
    }

    #[test]
    fn time_passing_alone_keeps_the_last_snapshots() {
        // a month-old set: the same ones are kept as on the day they were taken
        let s = snaps(&[("x", at(0, 1, 0)), ("y", at(0, 2, 0)), ("z", at(1, 2, 0))]);
        assert_eq!(ids(Retention::default().keep(&s)), ["x", "y", "z"]);
    }
}
