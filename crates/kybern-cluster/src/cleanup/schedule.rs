//! Cron schedules of cleanup policies: the five standard fields (names of months and days,
//! ranges, lists, steps), the `@hourly`-style descriptors and `@every <duration>`, in UTC, to the
//! minute. The engine validates the same syntax when a policy loads; this computes when a
//! schedule next fires. Day of month and day of week combine as cron combines them: when both are
//! restricted either may match, otherwise both must.

use time::{Duration, OffsetDateTime, Time};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Cron(Fields),
    /// `@every <duration>`: a fixed interval.
    Every(Duration),
}

/// One bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month or day of week is `*` (then both must match).
    any_day: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(s: &str, names: &[&str], first: u32) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let upper = s.to_ascii_uppercase();
    let i = names.iter().position(|n| *n == upper)?;
    u32::try_from(i).ok().map(|i| i + first)
}

/// The bits of one field; `star` says whether it is `*`/`?` (possibly stepped).
fn field(text: &str, name: &str, lo: u32, hi: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let first_name = if names.len() == 12 { 1 } else { 0 };
    let mut bits = 0u64;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: invalid step {s:?}"))?;
                (r, Some(s))
            }
            None => (item, None),
        };
        let (a, b) = if range == "*" || range == "?" {
            star = true;
            (lo, hi)
        } else {
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (a, Some(b)),
                None => (range, None),
            };
            let a = value(a, names, first_name)
                .ok_or_else(|| format!("{name}: invalid value {range:?}"))?;
            // `5/10` runs from 5 to the end of the range, as cron reads it.
            let b = match b {
                Some(b) => value(b, names, first_name)
                    .ok_or_else(|| format!("{name}: invalid value {range:?}"))?,
                None if step.is_some() => hi,
                None => a,
            };
            (a, b)
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{name}: {range:?} is outside {lo}-{hi}"));
        }
        let step = step.unwrap_or(1);
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule, naming the part that is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let standard = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => {
                if let Some(d) = other.strip_prefix("@every ") {
                    let nanos = kybern_engine::duration::parse(d.trim())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("invalid @every duration {d:?}"))?;
                    let nanos = i64::try_from(nanos)
                        .map_err(|_| format!("@every duration {d:?} is too long"))?;
                    return Ok(Schedule::Every(Duration::nanoseconds(nanos)));
                }
                if other.starts_with('@') {
                    return Err(format!("unknown descriptor {other}"));
                }
                other
            }
        };
        let parts: Vec<&str> = standard.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = parts[..] else {
            return Err(format!("expected 5 fields, found {}", parts.len()));
        };
        let (minutes, _) = field(minute, "minute", 0, 59, &[])?;
        let (hours, _) = field(hour, "hour", 0, 23, &[])?;
        let (days, day_star) = field(day, "day of month", 1, 31, &[])?;
        let (months, _) = field(month, "month", 1, 12, &MONTHS)?;
        let (mut weekdays, weekday_star) = field(weekday, "day of week", 0, 7, &DAYS)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule::Cron(Fields {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day: day_star || weekday_star,
        }))
    }

    /// The first time strictly after `t` at which the schedule fires (`None`: not within
    /// five years, e.g. the 31st of February).
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let f = match self {
            Schedule::Every(d) => return t.checked_add(*d),
            Schedule::Cron(f) => f,
        };
        let t = t.to_offset(time::UtcOffset::UTC);
        let mut at = t
            .replace_second(0)
            .ok()?
            .replace_nanosecond(0)
            .ok()?
            .checked_add(Duration::minutes(1))?;
        let limit = t.checked_add(Duration::days(5 * 366))?;
        let has = |bits: u64, v: u8| bits & (1u64 << v) != 0;
        while at <= limit {
            let day_ok = {
                let dom = has(f.days, at.day());
                let dow = has(f.weekdays, at.weekday().number_days_from_sunday());
                if f.any_day { dom && dow } else { dom || dow }
            };
            if !has(f.months, u8::from(at.month())) || !day_ok {
                at = at
                    .replace_time(Time::MIDNIGHT)
                    .checked_add(Duration::days(1))?;
                continue;
            }
            if !has(f.hours, at.hour()) {
                at = at.replace_minute(0).ok()?.checked_add(Duration::hours(1))?;
                continue;
            }
            if !has(f.minutes, at.minute()) {
                at = at.checked_add(Duration::minutes(1))?;
                continue;
            }
            return Some(at);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(s: &str, t: OffsetDateTime) -> OffsetDateTime {
        Schedule::parse(s).unwrap().next_after(t).unwrap()
    }

    #[test]
    fn schedules_fire_at_the_next_matching_minute() {
        let t = datetime!(2026-03-14 10:07:30 UTC);
        assert_eq!(next("*/5 * * * *", t), datetime!(2026-03-14 10:10 UTC));
        assert_eq!(
            next("*/5 * * * *", datetime!(2026-03-14 10:10 UTC)),
            datetime!(2026-03-14 10:15 UTC)
        );
        assert_eq!(next("0 3 * * *", t), datetime!(2026-03-15 03:00 UTC));
        assert_eq!(next("@hourly", t), datetime!(2026-03-14 11:00 UTC));
        // 2026-03-14 is a Saturday.
        assert_eq!(next("30 9 * * MON-FRI", t), datetime!(2026-03-16 09:30 UTC));
        assert_eq!(next("0 0 1 JAN *", t), datetime!(2027-01-01 00:00 UTC));
        assert_eq!(next("0 0 * * 7", t), datetime!(2026-03-15 00:00 UTC));
        // Day of month or day of week when both are given: the 20th, or a Sunday first.
        assert_eq!(next("0 0 20 * SUN", t), datetime!(2026-03-15 00:00 UTC));
        assert_eq!(next("5/20 * * * *", t), datetime!(2026-03-14 10:25 UTC));
        assert_eq!(next("@every 90s", t), datetime!(2026-03-14 10:09:00 UTC));
        assert_eq!(Schedule::parse("0 0 31 2 *").unwrap().next_after(t), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (s, want) in [
            ("* * *", "expected 5 fields"),
            ("61 * * * *", "minute"),
            ("*/0 * * * *", "invalid step"),
            ("* * * FOO *", "month"),
            ("@sometimes", "unknown descriptor"),
            ("@every soon", "@every"),
        ] {
            let e = Schedule::parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
