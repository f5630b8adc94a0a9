//! Arithmetic over numbers, Kubernetes quantities and Go durations, with Kyverno's typing:
//! a string operand is a quantity if it parses as one (so `"10m"` is 10 milli), else a duration.
//! Quantity and duration results are strings; scalar results are numbers.

use ::jmespath::{Rcvar, Variable};

use super::functions::{arg, arg_num, number, string};
use crate::duration;
use crate::quantity::{Decimal, ExactQuantity};

type Out = Result<Rcvar, String>;

#[derive(Debug, Clone, Copy)]
enum Operand {
    Scalar(f64),
    Quantity(ExactQuantity),
    /// Nanoseconds (Go `time.Duration`).
    Duration(i64),
}

use Operand::{Duration as D, Quantity as Q, Scalar as S};

const TYPE_MISMATCH: &str = "types mismatch";
const ZERO_DIVISOR: &str = "Zero divisor passed";
const NON_INT_MODULO: &str = "Non-integer argument(s) passed for modulo";

fn operand(v: &Variable) -> Option<Operand> {
    match v {
        Variable::Number(n) => n.as_f64().map(S),
        Variable::String(s) => ExactQuantity::parse(s)
            .map(Q)
            .or_else(|| duration_nanos(s).map(D)),
        _ => None,
    }
}

fn duration_nanos(s: &str) -> Option<i64> {
    duration::parse(s).and_then(|n| i64::try_from(n).ok())
}

fn operands(args: &[Rcvar]) -> Result<(Operand, Operand), String> {
    match (operand(arg(args, 0)?), operand(arg(args, 1)?)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err("invalid operands".to_string()),
    }
}

fn quantity(value: Option<Decimal>, like: ExactQuantity) -> Out {
    let value = value.ok_or("quantity overflow")?;
    Ok(string(
        ExactQuantity {
            value,
            format: like.format,
        }
        .canonical(),
    ))
}

fn dur(nanos: i128) -> Out {
    Ok(string(duration::format(nanos)))
}

/// A scalar as a quantity value, the way Kyverno re-parses `fmt.Sprintf("%v", f)`.
fn scalar_decimal(f: f64) -> Result<Decimal, String> {
    Decimal::parse(&format!("{f}")).ok_or_else(|| format!("invalid scalar {f}"))
}

/// Go's float-to-Duration conversion (truncates; saturates instead of overflowing).
fn float_nanos(f: f64) -> i128 {
    f.trunc().clamp(i64::MIN as f64, i64::MAX as f64) as i128
}

pub(super) fn add(args: &[Rcvar]) -> Out {
    let (a, b) = operands(args)?;
    add_operands(a, b)
}

fn add_operands(a: Operand, b: Operand) -> Out {
    match (a, b) {
        (S(x), S(y)) => number(x + y),
        (Q(x), Q(y)) => {
            // Kubernetes' Quantity.Add keeps the receiver's format unless it is zero.
            let like = if x.value.mantissa == 0 { y } else { x };
            quantity(x.value.checked_add(y.value), like)
        }
        (D(x), D(y)) => dur(i128::from(x) + i128::from(y)),
        _ => Err(TYPE_MISMATCH.to_string()),
    }
}

pub(super) fn sum(args: &[Rcvar]) -> Out {
    let items = arg(args, 0)?
        .as_array()
        .ok_or("argument 1 is expected of array type")?;
    let (first, rest) = items
        .split_first()
        .ok_or("at least one element in the array is required")?;
    rest.iter().try_fold(first.clone(), |acc, item| {
        let (Some(a), Some(b)) = (operand(&acc), operand(item)) else {
            return Err("invalid operands".to_string());
        };
        add_operands(a, b)
    })
}

pub(super) fn subtract(args: &[Rcvar]) -> Out {
    match operands(args)? {
        (S(x), S(y)) => number(x - y),
        (Q(x), Q(y)) => {
            let like = if x.value.mantissa == 0 { y } else { x };
            quantity(x.value.checked_sub(y.value), like)
        }
        (D(x), D(y)) => dur(i128::from(x) - i128::from(y)),
        _ => Err(TYPE_MISMATCH.to_string()),
    }
}

pub(super) fn multiply(args: &[Rcvar]) -> Out {
    match operands(args)? {
        (S(x), S(y)) => number(x * y),
        (Q(q), S(s)) | (S(s), Q(q)) => quantity(q.value.checked_mul(scalar_decimal(s)?), q),
        (D(d), S(s)) | (S(s), D(d)) => dur(float_nanos(d as f64 * s)),
        _ => Err(TYPE_MISMATCH.to_string()),
    }
}

pub(super) fn divide(args: &[Rcvar]) -> Out {
    match operands(args)? {
        (S(x), S(y)) => {
            if y == 0.0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            number(x / y)
        }
        (Q(x), Q(y)) => {
            let divisor = y.value.to_f64();
            if divisor == 0.0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            number(x.value.to_f64() / divisor)
        }
        (Q(q), S(s)) => {
            if s == 0.0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            quantity(q.value.checked_div_truncated(scalar_decimal(s)?), q)
        }
        (D(x), D(y)) => {
            if y == 0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            number(x as f64 / y as f64)
        }
        (D(d), S(s)) => {
            if s == 0.0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            dur(float_nanos(d as f64 / s))
        }
        _ => Err(TYPE_MISMATCH.to_string()),
    }
}

/// An integral float as i64, or `None`.
fn integral(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

pub(super) fn modulo(args: &[Rcvar]) -> Out {
    match operands(args)? {
        (S(x), S(y)) => {
            let (Some(a), Some(b)) = (integral(x), integral(y)) else {
                return Err(NON_INT_MODULO.to_string());
            };
            if b == 0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            number(a.wrapping_rem(b) as f64)
        }
        (Q(x), Q(y)) => {
            let (Some(a), Some(b)) = (integral(x.value.to_f64()), integral(y.value.to_f64()))
            else {
                return Err(NON_INT_MODULO.to_string());
            };
            if b == 0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            quantity(
                Some(Decimal {
                    mantissa: i128::from(a.wrapping_rem(b)),
                    exponent: 0,
                }),
                x,
            )
        }
        (D(x), D(y)) => {
            if y == 0 {
                return Err(ZERO_DIVISOR.to_string());
            }
            dur(i128::from(x.wrapping_rem(y)))
        }
        _ => Err(TYPE_MISMATCH.to_string()),
    }
}

pub(super) fn round(args: &[Rcvar]) -> Out {
    let value = arg_num(args, 0)?;
    let places = arg_num(args, 1)?;
    let Some(places) = integral(places) else {
        return Err("Non-integer argument(s) passed for round off".to_string());
    };
    if places < 0 {
        return Err("Argument out of bounds for round off".to_string());
    }
    let shift = 10f64.powi(i32::try_from(places).unwrap_or(i32::MAX));
    if !shift.is_finite() {
        return number(value);
    }
    // Go's math.Round rounds half away from zero, like f64::round.
    number((value * shift).round() / shift)
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
    fn typed_results() {
        let cases: &[(&str, Value)] = &[
            ("add(`1`, `2`)", json!(3)),
            ("add(`1.5`, `2`)", json!(3.5)),
            ("add('1Gi', '512Mi')", json!("1536Mi")),
            ("add('500m', '500m')", json!("1")),
            ("add('10m', '10m')", json!("20m")),
            ("add('1h', '30m0s')", json!("1h30m0s")),
            ("add('1', '2')", json!("3")),
            ("add('0', '1Ki')", json!("1Ki")),
            ("sum(`[1, 2, 3]`)", json!(6)),
            ("sum(['1Gi', '1Gi', '2Gi'])", json!("4Gi")),
            ("sum(['1h', '1h'])", json!("2h0m0s")),
            ("sum(['1Gi'])", json!("1Gi")),
            ("subtract(`5`, `7`)", json!(-2)),
            ("subtract('1Gi', '512Mi')", json!("512Mi")),
            ("subtract('1h', '2h')", json!("-1h0m0s")),
            ("multiply(`3`, `4`)", json!(12)),
            ("multiply('1Gi', `2`)", json!("2Gi")),
            ("multiply(`2`, '500m')", json!("1")),
            ("multiply('100Mi', `1.5`)", json!("150Mi")),
            ("multiply('1h', `2`)", json!("2h0m0s")),
            ("multiply(`0.5`, '1h')", json!("30m0s")),
            ("divide(`10`, `4`)", json!(2.5)),
            ("divide('1Gi', '512Mi')", json!(2)),
            ("divide('1Gi', `2`)", json!("512Mi")),
            ("divide('10', `3`)", json!("3")),
            ("divide('1h', '30m0s')", json!(2)),
            ("divide('1h', `4`)", json!("15m0s")),
            ("modulo(`7`, `3`)", json!(1)),
            ("modulo(`-7`, `3`)", json!(-1)),
            ("modulo('7Ki', '2Ki')", json!("1Ki")),
            ("modulo('1h', '25m0s')", json!("10m0s")),
            // "25m" is a quantity (25 milli), so mixing it with a duration fails.
            ("round(`1.2345`, `2`)", json!(1.23)),
            ("round(`2.5`, `0`)", json!(3)),
            ("round(`-2.5`, `0`)", json!(-3)),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr).as_ref(), Ok(want), "{expr}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            ("add(`1`, '1Gi')", "types mismatch"),
            ("add('1Gi', '1h')", "types mismatch"),
            ("add('abc', `1`)", "invalid operands"),
            ("add(`true`, `1`)", "invalid operands"),
            ("multiply('1Gi', '1Gi')", "types mismatch"),
            ("multiply('1h', '1h')", "types mismatch"),
            ("divide(`1`, `0`)", "Zero divisor"),
            ("divide('1Gi', '0')", "Zero divisor"),
            ("divide('1h', '0s')", "Zero divisor"),
            ("divide(`1`, '1Gi')", "types mismatch"),
            ("divide(`1`, '1h')", "types mismatch"),
            ("divide('1Gi', '1h')", "types mismatch"),
            ("modulo(`1.5`, `1`)", "Non-integer"),
            ("modulo(`1`, `0`)", "Zero divisor"),
            ("modulo('1h', '0s')", "Zero divisor"),
            ("modulo('1h', '25m')", "types mismatch"),
            ("sum(`[]`)", "at least one"),
            ("sum(['1Gi', `1`])", "types mismatch"),
            ("round(`1`, `0.5`)", "Non-integer"),
            ("round(`1`, `-1`)", "out of bounds"),
        ];
        for (expr, want) in cases {
            let err = eval(expr).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }
}
