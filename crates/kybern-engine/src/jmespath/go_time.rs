//! Go `time.Parse` layouts (`2006-01-02T15:04:05Z07:00`) and Go's RFC3339 output.
//!
//! The layout is split into the same elements Go recognises (`2006`, `01`, `Jan`, `15`, `PM`,
//! `-07:00`, `MST`, `.000`, ...) and the value is consumed element by element with Go's rules, so
//! the accepted inputs and the resulting instant and offset match Go's.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike};

pub(super) const RFC3339: &str = "2006-01-02T15:04:05Z07:00";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm,
    PmLower,
    Tz,
    /// Numeric offset; `z` = `Z` accepted for UTC; the shape says which parts are present.
    Offset {
        z: bool,
        shape: OffsetShape,
    },
    /// `.000` (exact digit count) or `.999` (optional, any digits).
    Frac {
        exact: bool,
        digits: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetShape {
    /// -0700
    Hhmm,
    /// -07:00
    ColonHhmm,
    /// -07
    Hh,
    /// -070000
    Hhmmss,
    /// -07:00:00
    ColonHhmmss,
}

const SHORT_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const SHORT_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn starts_lower(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

fn is_digit(s: &str, i: usize) -> bool {
    s.as_bytes().get(i).is_some_and(u8::is_ascii_digit)
}

/// Splits off the next layout element: (literal prefix, element, rest). Mirrors Go's `nextStdChunk`.
fn next_chunk(layout: &str) -> (&str, Option<Std>, &str) {
    let b = layout.as_bytes();
    let at = |i: usize, s: &str| layout.get(i..).is_some_and(|r| r.starts_with(s));
    let split = |i: usize, len: usize, std: Std| {
        (
            layout.get(..i).unwrap_or(""),
            Some(std),
            layout.get(i + len..).unwrap_or(""),
        )
    };
    for (i, &c) in b.iter().enumerate() {
        let rest_from = |n: usize| layout.get(i + n..).unwrap_or("");
        match c {
            b'J' if at(i, "Jan") => {
                if at(i, "January") {
                    return split(i, 7, Std::LongMonth);
                }
                if !starts_lower(rest_from(3)) {
                    return split(i, 3, Std::Month);
                }
            }
            b'M' => {
                if at(i, "Mon") {
                    if at(i, "Monday") {
                        return split(i, 6, Std::LongWeekDay);
                    }
                    if !starts_lower(rest_from(3)) {
                        return split(i, 3, Std::WeekDay);
                    }
                }
                if at(i, "MST") {
                    return split(i, 3, Std::Tz);
                }
            }
            b'0' => {
                if let Some(d @ b'1'..=b'6') = b.get(i + 1) {
                    let std = [
                        Std::ZeroMonth,
                        Std::ZeroDay,
                        Std::ZeroHour12,
                        Std::ZeroMinute,
                        Std::ZeroSecond,
                        Std::Year,
                    ];
                    if let Some(s) = std.get(usize::from(d - b'1')) {
                        return split(i, 2, *s);
                    }
                }
                if at(i, "002") {
                    return split(i, 3, Std::ZeroYearDay);
                }
            }
            b'1' => {
                if b.get(i + 1) == Some(&b'5') {
                    return split(i, 2, Std::Hour);
                }
                return split(i, 1, Std::NumMonth);
            }
            b'2' => {
                if at(i, "2006") {
                    return split(i, 4, Std::LongYear);
                }
                return split(i, 1, Std::Day);
            }
            b'_' => {
                if b.get(i + 1) == Some(&b'2') {
                    // `_2006` is a literal `_` followed by the long year.
                    if at(i + 1, "2006") {
                        return split(i + 1, 4, Std::LongYear);
                    }
                    return split(i, 2, Std::UnderDay);
                }
                if at(i, "__2") {
                    return split(i, 3, Std::UnderYearDay);
                }
            }
            b'3' => return split(i, 1, Std::Hour12),
            b'4' => return split(i, 1, Std::Minute),
            b'5' => return split(i, 1, Std::Second),
            b'P' if b.get(i + 1) == Some(&b'M') => return split(i, 2, Std::Pm),
            b'p' if b.get(i + 1) == Some(&b'm') => return split(i, 2, Std::PmLower),
            b'-' | b'Z' => {
                let z = c == b'Z';
                let shapes = [
                    ("070000", OffsetShape::Hhmmss),
                    ("07:00:00", OffsetShape::ColonHhmmss),
                    ("0700", OffsetShape::Hhmm),
                    ("07:00", OffsetShape::ColonHhmm),
                    ("07", OffsetShape::Hh),
                ];
                for (pat, shape) in shapes {
                    if at(i + 1, pat) {
                        return split(i, 1 + pat.len(), Std::Offset { z, shape });
                    }
                }
            }
            b'.' | b',' => {
                if let Some(&ch @ (b'0' | b'9')) = b.get(i + 1) {
                    let mut j = i + 1;
                    while b.get(j) == Some(&ch) {
                        j += 1;
                    }
                    if !is_digit(layout, j) {
                        let std = Std::Frac {
                            exact: ch == b'0',
                            digits: j - (i + 1),
                        };
                        return split(i, j - i, std);
                    }
                }
            }
            _ => {}
        }
    }
    (layout, None, "")
}

/// Consumes the literal `prefix` from `value`; a space in the layout matches any run of spaces.
fn skip<'a>(mut value: &'a str, mut prefix: &str) -> Result<&'a str, ()> {
    while let Some(p) = prefix.chars().next() {
        if p == ' ' {
            if value.chars().next().is_some_and(|c| c != ' ') {
                return Err(());
            }
            prefix = prefix.trim_start_matches(' ');
            value = value.trim_start_matches(' ');
            continue;
        }
        let rest = value.strip_prefix(p).ok_or(())?;
        value = rest;
        prefix = prefix.get(p.len_utf8()..).unwrap_or("");
    }
    Ok(value)
}

/// One or two digits (exactly two when `fixed`).
fn getnum(s: &str, fixed: bool) -> Result<(u32, &str), ()> {
    let d0 = digit(s, 0).ok_or(())?;
    match digit(s, 1) {
        Some(d1) => Ok((d0 * 10 + d1, s.get(2..).unwrap_or(""))),
        None if fixed => Err(()),
        None => Ok((d0, s.get(1..).unwrap_or(""))),
    }
}

/// One to three digits (exactly three when `fixed`).
fn getnum3(s: &str, fixed: bool) -> Result<(u32, &str), ()> {
    let mut n = 0;
    let mut i = 0;
    while i < 3 {
        match digit(s, i) {
            Some(d) => n = n * 10 + d,
            None => break,
        }
        i += 1;
    }
    if i == 0 || (fixed && i != 3) {
        return Err(());
    }
    Ok((n, s.get(i..).unwrap_or("")))
}

fn digit(s: &str, i: usize) -> Option<u32> {
    s.as_bytes()
        .get(i)
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
}

/// Case-insensitive prefix lookup in a name table; returns the index and the rest.
fn lookup<'a>(table: &[&str], value: &'a str) -> Result<(usize, &'a str), ()> {
    for (i, name) in table.iter().enumerate() {
        if let Some(head) = value.get(..name.len())
            && head.eq_ignore_ascii_case(name)
        {
            return Ok((i, value.get(name.len()..).unwrap_or("")));
        }
    }
    Err(())
}

/// Fraction `.ddd` of `len` bytes (separator included) to nanoseconds.
fn nanos(value: &str, len: usize) -> Result<u32, ()> {
    let digits = value.get(1..len).ok_or(())?;
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(value.as_bytes().first(), Some(b'.' | b','))
    {
        return Err(());
    }
    let mut ns: u32 = 0;
    let mut scale = 0;
    for b in digits.bytes().take(9) {
        ns = ns * 10 + u32::from(b - b'0');
        scale += 1;
    }
    for _ in scale..9 {
        ns *= 10;
    }
    Ok(ns)
}

/// Length of a time-zone abbreviation at the start of `value` (Go's `parseTimeZone`, simplified).
fn zone_len(value: &str) -> Option<usize> {
    let b = value.as_bytes();
    if value.starts_with("ChST") || value.starts_with("MeST") {
        return Some(4);
    }
    if value.starts_with("GMT") {
        // GMT optionally followed by a signed hour offset.
        let rest = value.get(3..)?;
        let mut n = 3;
        if let Some(sign @ (b'+' | b'-')) = rest.as_bytes().first() {
            let _ = sign;
            let digits = rest
                .get(1..)?
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits > 0 && digits <= 2 {
                n += 1 + digits;
            }
        }
        return Some(n);
    }
    let upper = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    match upper {
        3 => Some(3),
        4 if b.get(3) == Some(&b'T') => Some(4),
        5 if b.get(4) == Some(&b'T') => Some(5),
        _ => None,
    }
}

/// Parses `value` with a Go layout. Without zone information the result is UTC; an unknown zone
/// abbreviation gets a zero offset, as in Go.
pub(super) fn parse(layout: &str, value: &str) -> Result<DateTime<FixedOffset>, String> {
    let bad = |elem: &str, rest: &str| {
        format!("parsing time {value:?} as {layout:?}: cannot parse {rest:?} as {elem:?}")
    };
    let mut year: i32 = 0;
    let mut month: i32 = -1;
    let mut day: i32 = -1;
    let mut yday: i32 = -1;
    let (mut hour, mut min, mut sec, mut nsec) = (0u32, 0u32, 0u32, 0u32);
    let (mut pm, mut am) = (false, false);
    let mut offset: Option<i32> = None;
    let mut zone_name: Option<String> = None;

    let mut rest_layout = layout;
    let mut v = value;
    loop {
        let (prefix, std, suffix) = next_chunk(rest_layout);
        let elem = rest_layout
            .get(prefix.len()..rest_layout.len() - suffix.len())
            .unwrap_or("");
        v = skip(v, prefix).map_err(|()| bad(prefix, v))?;
        let Some(std) = std else {
            if !v.is_empty() {
                return Err(format!("parsing time {value:?}: extra text: {v:?}"));
            }
            break;
        };
        rest_layout = suffix;
        let hold = v;
        let range_err = |what: &str| format!("parsing time {value:?}: {what} out of range");
        match std {
            Std::Year => {
                let p = v.get(..2).filter(|p| p.bytes().all(|b| b.is_ascii_digit()));
                let p = p.ok_or_else(|| bad(elem, hold))?;
                let y: i32 = p.parse().map_err(|_| bad(elem, hold))?;
                year = if y >= 69 { y + 1900 } else { y + 2000 };
                v = v.get(2..).unwrap_or("");
            }
            Std::LongYear => {
                let p = v.get(..4).filter(|p| p.bytes().all(|b| b.is_ascii_digit()));
                year = p
                    .ok_or_else(|| bad(elem, hold))?
                    .parse()
                    .map_err(|_| bad(elem, hold))?;
                v = v.get(4..).unwrap_or("");
            }
            Std::Month | Std::LongMonth => {
                let table: &[&str] = if std == Std::Month {
                    &SHORT_MONTHS
                } else {
                    &LONG_MONTHS
                };
                let (m, r) = lookup(table, v).map_err(|()| bad(elem, hold))?;
                month = m as i32 + 1;
                v = r;
            }
            Std::NumMonth | Std::ZeroMonth => {
                let (m, r) = getnum(v, std == Std::ZeroMonth).map_err(|()| bad(elem, hold))?;
                if !(1..=12).contains(&m) {
                    return Err(range_err("month"));
                }
                month = m as i32;
                v = r;
            }
            Std::WeekDay | Std::LongWeekDay => {
                let table: &[&str] = if std == Std::WeekDay {
                    &SHORT_DAYS
                } else {
                    &LONG_DAYS
                };
                v = lookup(table, v).map_err(|()| bad(elem, hold))?.1;
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                if std == Std::UnderDay {
                    v = v.strip_prefix(' ').unwrap_or(v);
                }
                let (d, r) = getnum(v, std == Std::ZeroDay).map_err(|()| bad(elem, hold))?;
                day = d as i32;
                v = r;
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                if std == Std::UnderYearDay {
                    for _ in 0..2 {
                        v = v.strip_prefix(' ').unwrap_or(v);
                    }
                }
                let (d, r) = getnum3(v, std == Std::ZeroYearDay).map_err(|()| bad(elem, hold))?;
                yday = d as i32;
                v = r;
            }
            Std::Hour => {
                let (h, r) = getnum(v, false).map_err(|()| bad(elem, hold))?;
                if h >= 24 {
                    return Err(range_err("hour"));
                }
                hour = h;
                v = r;
            }
            Std::Hour12 | Std::ZeroHour12 => {
                let (h, r) = getnum(v, std == Std::ZeroHour12).map_err(|()| bad(elem, hold))?;
                if h > 12 {
                    return Err(range_err("hour"));
                }
                hour = h;
                v = r;
            }
            Std::Minute | Std::ZeroMinute => {
                let (m, r) = getnum(v, std == Std::ZeroMinute).map_err(|()| bad(elem, hold))?;
                if m >= 60 {
                    return Err(range_err("minute"));
                }
                min = m;
                v = r;
            }
            Std::Second | Std::ZeroSecond => {
                let (s, r) = getnum(v, std == Std::ZeroSecond).map_err(|()| bad(elem, hold))?;
                if s >= 60 {
                    return Err(range_err("second"));
                }
                sec = s;
                v = r;
                // A fraction in the value but not in the layout is accepted after seconds.
                if matches!(v.as_bytes().first(), Some(b'.' | b',')) && is_digit(v, 1) {
                    let next_is_frac = matches!(next_chunk(rest_layout).1, Some(Std::Frac { .. }));
                    if !next_is_frac {
                        let mut n = 2;
                        while is_digit(v, n) {
                            n += 1;
                        }
                        nsec = nanos(v, n).map_err(|()| bad(elem, hold))?;
                        v = v.get(n..).unwrap_or("");
                    }
                }
            }
            Std::Pm | Std::PmLower => {
                let p = v.get(..2).ok_or_else(|| bad(elem, hold))?;
                let (pm_s, am_s) = if std == Std::Pm {
                    ("PM", "AM")
                } else {
                    ("pm", "am")
                };
                if p == pm_s {
                    pm = true;
                } else if p == am_s {
                    am = true;
                } else {
                    return Err(bad(elem, hold));
                }
                v = v.get(2..).unwrap_or("");
            }
            Std::Offset { z, shape } => {
                if z && v.starts_with('Z') {
                    v = v.get(1..).unwrap_or("");
                    offset = Some(0);
                    continue;
                }
                let b = v.as_bytes();
                let colon = |i: usize| b.get(i) == Some(&b':');
                let (hh, mm, ss, len) = match shape {
                    OffsetShape::ColonHhmm if colon(3) => (1..3, Some(4..6), None, 6),
                    OffsetShape::Hh => (1..3, None, None, 3),
                    OffsetShape::ColonHhmmss if colon(3) && colon(6) => {
                        (1..3, Some(4..6), Some(7..9), 9)
                    }
                    OffsetShape::Hhmmss => (1..3, Some(3..5), Some(5..7), 7),
                    OffsetShape::Hhmm => (1..3, Some(3..5), None, 5),
                    _ => return Err(bad(elem, hold)),
                };
                if v.len() < len {
                    return Err(bad(elem, hold));
                }
                let num = |r: Option<std::ops::Range<usize>>| -> Result<i32, String> {
                    match r {
                        None => Ok(0),
                        Some(r) => {
                            let s = v.get(r).ok_or_else(|| bad(elem, hold))?;
                            let (n, rest) = getnum(s, true).map_err(|()| bad(elem, hold))?;
                            if !rest.is_empty() {
                                return Err(bad(elem, hold));
                            }
                            Ok(n as i32)
                        }
                    }
                };
                let secs = (num(Some(hh))? * 60 + num(mm)?) * 60 + num(ss)?;
                offset = Some(match b.first() {
                    Some(b'+') => secs,
                    Some(b'-') => -secs,
                    _ => return Err(bad(elem, hold)),
                });
                v = v.get(len..).unwrap_or("");
            }
            Std::Tz => {
                if let Some(r) = v.strip_prefix("UTC") {
                    offset = Some(0);
                    v = r;
                    continue;
                }
                let n = zone_len(v).ok_or_else(|| bad(elem, hold))?;
                zone_name = v.get(..n).map(str::to_string);
                v = v.get(n..).unwrap_or("");
            }
            Std::Frac {
                exact: true,
                digits,
            } => {
                let n = digits + 1;
                if v.len() < n {
                    return Err(bad(elem, hold));
                }
                nsec = nanos(v, n).map_err(|()| bad(elem, hold))?;
                v = v.get(n..).unwrap_or("");
            }
            Std::Frac { exact: false, .. } => {
                if !(matches!(v.as_bytes().first(), Some(b'.' | b',')) && is_digit(v, 1)) {
                    continue;
                }
                let mut n = 1;
                while is_digit(v, n) {
                    n += 1;
                }
                nsec = nanos(v, n).map_err(|()| bad(elem, hold))?;
                v = v.get(n..).unwrap_or("");
            }
        }
    }

    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    let date = if yday >= 0 {
        let d = NaiveDate::from_yo_opt(year, yday.unsigned_abs())
            .ok_or_else(|| format!("parsing time {value:?}: day-of-year out of range"))?;
        if (month >= 0 && month as u32 != d.month()) || (day >= 0 && day as u32 != d.day()) {
            return Err(format!(
                "parsing time {value:?}: day-of-year does not match month"
            ));
        }
        d
    } else {
        let month = if month < 0 { 1 } else { month };
        let day = if day < 0 { 1 } else { day };
        NaiveDate::from_ymd_opt(year, month.unsigned_abs(), day.unsigned_abs())
            .ok_or_else(|| format!("parsing time {value:?}: day out of range"))?
    };
    let naive = date
        .and_hms_nano_opt(hour, min, sec, nsec)
        .ok_or_else(|| format!("parsing time {value:?}: invalid time"))?;
    let offset_secs = match (offset, zone_name) {
        (Some(o), _) => o,
        // `GMT+3` style names carry their offset; other unknown abbreviations get zero.
        (None, Some(name)) => name
            .strip_prefix("GMT")
            .and_then(|h| h.parse::<i32>().ok())
            .map_or(0, |h| h * 3600),
        (None, None) => 0,
    };
    let tz = FixedOffset::east_opt(offset_secs)
        .ok_or_else(|| format!("parsing time {value:?}: offset out of range"))?;
    tz.from_local_datetime(&naive)
        .single()
        .ok_or_else(|| format!("parsing time {value:?}: invalid time"))
}

/// Go's `t.Format(time.RFC3339)`: no fraction; `Z` for a zero offset.
pub(super) fn format_rfc3339(t: &DateTime<FixedOffset>) -> String {
    let off = t.offset().local_minus_utc();
    let zone = if off == 0 {
        "Z".to_string()
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.unsigned_abs();
        format!("{sign}{:02}:{:02}", a / 3600, (a / 60) % 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_layouts() {
        let cases = [
            (RFC3339, "2021-01-02T15:04:05Z", "2021-01-02T15:04:05Z"),
            (
                RFC3339,
                "2021-01-02T15:04:05.123+05:30",
                "2021-01-02T15:04:05+05:30",
            ),
            ("2006-01-02", "2021-12-31", "2021-12-31T00:00:00Z"),
            (
                "Mon Jan _2 15:04:05 2006",
                "Sat Jan  2 03:04:05 2021",
                "2021-01-02T03:04:05Z",
            ),
            (
                "Mon, 02 Jan 2006 15:04:05 MST",
                "Sat, 02 Jan 2021 03:04:05 PST",
                "2021-01-02T03:04:05Z",
            ),
            (
                "Mon, 02 Jan 2006 15:04:05 -0700",
                "Sat, 02 Jan 2021 03:04:05 -0800",
                "2021-01-02T03:04:05-08:00",
            ),
            (
                "02 Jan 06 15:04 MST",
                "02 Feb 99 10:30 UTC",
                "1999-02-02T10:30:00Z",
            ),
            (
                "January 2, 2006 3:04 PM",
                "March 7, 2022 9:15 PM",
                "2022-03-07T21:15:00Z",
            ),
            (
                "2006-01-02 15:04:05.000",
                "2022-03-07 01:02:03.456",
                "2022-03-07T01:02:03Z",
            ),
            ("2006-002", "2022-032", "2022-02-01T00:00:00Z"),
            ("15:04", "23:59", "0000-01-01T23:59:00Z"),
        ];
        for (layout, value, want) in cases {
            let got = parse(layout, value).map(|t| format_rfc3339(&t));
            assert_eq!(got.as_deref(), Ok(want), "{layout} / {value}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            (RFC3339, "2021-01-02"),
            (RFC3339, "2021-13-02T15:04:05Z"),
            (RFC3339, "2021-02-30T15:04:05Z"),
            (RFC3339, "2021-01-02T25:04:05Z"),
            (RFC3339, "2021-01-02T15:04:05Zjunk"),
            ("2006-01-02", "21-01-02"),
            ("3:04 PM", "9:15 XM"),
            ("", "x"),
        ];
        for (layout, value) in cases {
            assert!(parse(layout, value).is_err(), "{layout} / {value}");
        }
    }
}
