//! Time functions: RFC3339 / Go-layout parsing, Go duration arithmetic, cron conversion.

use ::jmespath::Rcvar;
use chrono::{DateTime, Datelike, FixedOffset, TimeDelta, Timelike, Utc};

use super::functions::{arg_str, boolean, string};
use super::go_time::{self, RFC3339};
use crate::duration;

type Out = Result<Rcvar, String>;

fn rfc3339(s: &str) -> Result<DateTime<FixedOffset>, String> {
    go_time::parse(RFC3339, s)
}

fn time_arg(args: &[Rcvar], i: usize) -> Result<DateTime<FixedOffset>, String> {
    rfc3339(arg_str(args, i)?)
}

fn duration_arg(args: &[Rcvar], i: usize) -> Result<i64, String> {
    let s = arg_str(args, i)?;
    duration::parse(s)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| format!("time: invalid duration {s:?}"))
}

/// Go's `t2.Sub(t1)`: nanoseconds, saturating at the Duration range.
fn sub(t2: &DateTime<FixedOffset>, t1: &DateTime<FixedOffset>) -> i128 {
    let d = t2.signed_duration_since(t1);
    d.num_nanoseconds().map_or_else(
        || {
            if d < TimeDelta::zero() {
                i128::from(i64::MIN)
            } else {
                i128::from(i64::MAX)
            }
        },
        i128::from,
    )
}

fn now() -> DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}

pub(super) fn time_since(args: &[Rcvar]) -> Out {
    let layout = arg_str(args, 0)?;
    let layout = if layout.is_empty() { RFC3339 } else { layout };
    let t1 = go_time::parse(layout, arg_str(args, 1)?)?;
    let t2 = match arg_str(args, 2)? {
        "" => now(),
        s => go_time::parse(layout, s)?,
    };
    Ok(string(duration::format(sub(&t2, &t1))))
}

pub(super) fn time_now(_: &[Rcvar]) -> Out {
    Ok(string(go_time::format_rfc3339(
        &chrono::Local::now().fixed_offset(),
    )))
}

pub(super) fn time_now_utc(_: &[Rcvar]) -> Out {
    Ok(string(go_time::format_rfc3339(&now())))
}

pub(super) fn time_to_cron(args: &[Rcvar]) -> Out {
    // Fields are taken in the time's own offset, as Kyverno does (no UTC conversion).
    let t = time_arg(args, 0)?;
    Ok(string(format!(
        "{} {} {} {} {}",
        t.minute(),
        t.hour(),
        t.day(),
        t.month(),
        t.weekday().num_days_from_sunday()
    )))
}

pub(super) fn time_add(args: &[Rcvar]) -> Out {
    let t = time_arg(args, 0)?;
    let d = duration_arg(args, 1)?;
    let sum = t
        .checked_add_signed(TimeDelta::nanoseconds(d))
        .ok_or("time out of range")?;
    Ok(string(go_time::format_rfc3339(&sum)))
}

pub(super) fn time_parse(args: &[Rcvar]) -> Out {
    let (layout, ts) = (arg_str(args, 0)?, arg_str(args, 1)?);
    if layout.parse::<i64>().is_ok() {
        // A numeric layout means the value is epoch seconds.
        let secs: i64 = ts
            .parse()
            .map_err(|_| format!("strconv.ParseInt: parsing {ts:?}: invalid syntax"))?;
        let t = DateTime::from_timestamp(secs, 0).ok_or("time out of range")?;
        return Ok(string(go_time::format_rfc3339(&t.fixed_offset())));
    }
    Ok(string(go_time::format_rfc3339(&go_time::parse(
        layout, ts,
    )?)))
}

pub(super) fn time_utc(args: &[Rcvar]) -> Out {
    let t = time_arg(args, 0)?;
    Ok(string(go_time::format_rfc3339(
        &t.with_timezone(&Utc).fixed_offset(),
    )))
}

pub(super) fn time_diff(args: &[Rcvar]) -> Out {
    let (t1, t2) = (time_arg(args, 0)?, time_arg(args, 1)?);
    Ok(string(duration::format(sub(&t2, &t1))))
}

pub(super) fn time_before(args: &[Rcvar]) -> Out {
    Ok(boolean(time_arg(args, 0)? < time_arg(args, 1)?))
}

pub(super) fn time_after(args: &[Rcvar]) -> Out {
    Ok(boolean(time_arg(args, 0)? > time_arg(args, 1)?))
}

pub(super) fn time_between(args: &[Rcvar]) -> Out {
    let (t, start, end) = (time_arg(args, 0)?, time_arg(args, 1)?, time_arg(args, 2)?);
    Ok(boolean(t > start && t < end))
}

/// Seconds from Go's zero time (0001-01-01 UTC) to the Unix epoch.
const ZERO_TO_UNIX_SECS: i128 = 62_135_596_800;

pub(super) fn time_truncate(args: &[Rcvar]) -> Out {
    let t = time_arg(args, 0)?;
    let d = duration_arg(args, 1)?;
    if d <= 0 {
        return Ok(string(go_time::format_rfc3339(&t)));
    }
    // Go truncates the absolute time since its zero time, independent of the offset.
    let since_zero = (i128::from(t.timestamp()) + ZERO_TO_UNIX_SECS) * 1_000_000_000
        + i128::from(t.timestamp_subsec_nanos());
    let rem = since_zero.rem_euclid(i128::from(d));
    let rem = i64::try_from(rem).map_err(|_| "duration out of range")?;
    let truncated = t
        .checked_sub_signed(TimeDelta::nanoseconds(rem))
        .ok_or("time out of range")?;
    Ok(string(go_time::format_rfc3339(&truncated)))
}

#[cfg(test)]
mod tests {
    use crate::jmespath::compile;
    use serde_json::{Value, json};

    fn eval(expr: &str) -> Result<Value, String> {
        compile(expr)
            .map_err(|e| e.to_string())?
            .search(&json!({}))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn time_functions() {
        let cases: &[(&str, Value)] = &[
            (
                "time_since('', '2021-01-02T15:04:05Z', '2021-01-02T16:05:06Z')",
                json!("1h1m1s"),
            ),
            (
                "time_since('2006-01-02', '2021-01-01', '2021-01-02')",
                json!("24h0m0s"),
            ),
            ("time_to_cron('2023-02-02T15:04:05Z')", json!("4 15 2 2 4")),
            (
                "time_add('2021-01-02T15:04:05Z', '1h30m')",
                json!("2021-01-02T16:34:05Z"),
            ),
            (
                "time_add('2021-01-02T15:04:05+01:00', '-2h')",
                json!("2021-01-02T13:04:05+01:00"),
            ),
            (
                "time_parse('2006-01-02T15:04:05Z07:00', '2021-01-02T15:04:05-07:00')",
                json!("2021-01-02T15:04:05-07:00"),
            ),
            (
                "time_parse('Mon Jan 02 2006 15:04:05 -0700', 'Fri Jun 22 2022 17:45:00 +0100')",
                json!("2022-06-22T17:45:00+01:00"),
            ),
            (
                "time_parse('1136214245', '1666030994')",
                json!("2022-10-17T18:23:14Z"),
            ),
            (
                "time_utc('2021-01-02T18:04:05+05:30')",
                json!("2021-01-02T12:34:05Z"),
            ),
            (
                "time_diff('2021-01-01T00:00:00Z', '2021-01-01T00:00:01.5Z')",
                json!("1.5s"),
            ),
            (
                "time_diff('2021-01-02T00:00:00Z', '2021-01-01T00:00:00Z')",
                json!("-24h0m0s"),
            ),
            (
                "time_before('2021-01-01T00:00:00Z', '2021-01-01T00:00:01Z')",
                json!(true),
            ),
            (
                "time_after('2021-01-01T00:00:00Z', '2021-01-01T00:00:01Z')",
                json!(false),
            ),
            (
                "time_after('2021-01-01T01:00:00+01:00', '2021-01-01T00:00:00Z')",
                json!(false),
            ),
            (
                "time_between('2021-01-01T00:00:01Z', '2021-01-01T00:00:00Z', '2021-01-01T00:00:02Z')",
                json!(true),
            ),
            (
                "time_between('2021-01-01T00:00:00Z', '2021-01-01T00:00:00Z', '2021-01-01T00:00:02Z')",
                json!(false),
            ),
            (
                "time_truncate('2023-02-02T15:04:05Z', '1h')",
                json!("2023-02-02T15:00:00Z"),
            ),
            (
                "time_truncate('2023-02-02T15:04:05+05:30', '24h')",
                json!("2023-02-02T05:30:00+05:30"),
            ),
            (
                "time_truncate('2023-02-02T15:04:05Z', '0s')",
                json!("2023-02-02T15:04:05Z"),
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr).as_ref(), Ok(want), "{expr}");
        }
    }

    #[test]
    fn clock_functions_return_rfc3339() {
        for f in ["time_now()", "time_now_utc()"] {
            let v = eval(f).unwrap();
            let s = v.as_str().unwrap();
            assert!(super::rfc3339(s).is_ok(), "{f}: {s}");
        }
        let since = eval("time_since('', '2000-01-01T00:00:00Z', '')").unwrap();
        assert!(since.as_str().unwrap().ends_with('s'));
    }

    #[test]
    fn errors() {
        for expr in [
            "time_add('2021-01-02', '1h')",
            "time_add('2021-01-02T15:04:05Z', '1d')",
            "time_parse('1136214245', 'abc')",
            "time_parse('2006-01-02', '2021/01/02')",
            "time_utc('yesterday')",
            "time_to_cron(`1`)",
        ] {
            assert!(eval(expr).is_err(), "{expr} should fail");
        }
    }
}
