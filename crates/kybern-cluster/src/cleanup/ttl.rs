//! The `cleanup.kyverno.io/ttl` label: when an object that carries it is due for deletion. The
//! value is a duration counted from the object's creation (`1h`, `30m`, `1h30m`) or, as Kyverno
//! reads it, a date and time (`2026-03-14T101500Z`) or a date (`2026-03-14`, midnight UTC):
//! label values cannot hold the colons of RFC 3339.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The label.
pub const LABEL: &str = "cleanup.kyverno.io/ttl";
/// The annotation that names the deletion's propagation policy.
pub const PROPAGATION: &str = "cleanup.kyverno.io/propagation-policy";

fn number<T: std::str::FromStr>(s: &str, range: std::ops::Range<usize>) -> Option<T> {
    s.get(range)?.parse().ok()
}

fn date(s: &str) -> Option<Date> {
    if s.len() < 10 || s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    let month = Month::try_from(number::<u8>(s, 5..7)?).ok()?;
    Date::from_calendar_date(number(s, 0..4)?, month, number(s, 8..10)?).ok()
}

/// When an object created at `created` with TTL label `value` expires, or why the value is not
/// one.
pub fn expiry(value: &str, created: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Some(nanos) = kybern_engine::duration::parse(value) {
        let nanos = i64::try_from(nanos).map_err(|_| format!("duration {value:?} is too long"))?;
        return created
            .checked_add(time::Duration::nanoseconds(nanos))
            .ok_or_else(|| format!("duration {value:?} is too long"));
    }
    let bad = || {
        format!(
            "{value:?} is neither a duration (1h, 30m) nor a time (2006-01-02T150405Z or 2006-01-02)"
        )
    };
    let day = date(value).ok_or_else(bad)?;
    let at = match value.len() {
        10 => Time::MIDNIGHT,
        18 if value.as_bytes()[10] == b'T' && value.ends_with('Z') => Time::from_hms(
            number(value, 11..13).ok_or_else(bad)?,
            number(value, 13..15).ok_or_else(bad)?,
            number(value, 15..17).ok_or_else(bad)?,
        )
        .map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    Ok(PrimitiveDateTime::new(day, at).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations_count_from_creation_and_times_are_absolute() {
        let created = datetime!(2026-03-14 10:00 UTC);
        assert_eq!(expiry("1h", created), Ok(datetime!(2026-03-14 11:00 UTC)));
        assert_eq!(
            expiry("1h30m", created),
            Ok(datetime!(2026-03-14 11:30 UTC))
        );
        assert_eq!(
            expiry("2026-03-20T081500Z", created),
            Ok(datetime!(2026-03-20 08:15 UTC))
        );
        assert_eq!(
            expiry("2026-03-20", created),
            Ok(datetime!(2026-03-20 00:00 UTC))
        );
        for bad in [
            "soon",
            "2026-13-01",
            "2026-03-20T0815Z",
            "2026-03-20T256000Z",
            "",
        ] {
            let e = expiry(bad, created).unwrap_err();
            assert!(e.contains("neither a duration"), "{bad}: {e}");
        }
    }
}
