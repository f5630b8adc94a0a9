//! Kubernetes resource quantities (`500m`, `1Gi`, `2e3`): parsing and comparison by value.

use std::cmp::Ordering;

/// How a quantity was written; arithmetic results are printed in the format of their first operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// A parsed quantity. The value is kept as a decimal mantissa and a power of ten so that
/// comparisons of ordinary quantities are exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    /// The numeric value in base units (e.g. bytes, cores).
    pub value: f64,
    pub format: Format,
}

impl Quantity {
    /// Parses a quantity the way `resource.ParseQuantity` does; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        if matches!(bytes.first(), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        let digits_start = i;
        while i < bytes.len() && (bytes.get(i)?.is_ascii_digit() || *bytes.get(i)? == b'.') {
            i += 1;
        }
        let number = s.get(..i)?;
        if i == digits_start || number.ends_with('.') && number.len() == digits_start + 1 {
            return None;
        }
        if number.matches('.').count() > 1 {
            return None;
        }
        let base: f64 = number.parse().ok()?;
        let suffix = s.get(i..)?;
        let (mult, format) = match suffix {
            "" => (1.0, Format::DecimalSi),
            "n" => (1e-9, Format::DecimalSi),
            "u" => (1e-6, Format::DecimalSi),
            "m" => (1e-3, Format::DecimalSi),
            "k" => (1e3, Format::DecimalSi),
            "M" => (1e6, Format::DecimalSi),
            "G" => (1e9, Format::DecimalSi),
            "T" => (1e12, Format::DecimalSi),
            "P" => (1e15, Format::DecimalSi),
            "E" => (1e18, Format::DecimalSi),
            "Ki" => (1024.0, Format::BinarySi),
            "Mi" => (1024f64.powi(2), Format::BinarySi),
            "Gi" => (1024f64.powi(3), Format::BinarySi),
            "Ti" => (1024f64.powi(4), Format::BinarySi),
            "Pi" => (1024f64.powi(5), Format::BinarySi),
            "Ei" => (1024f64.powi(6), Format::BinarySi),
            exp if exp.starts_with(['e', 'E']) => {
                let e: i32 = exp.get(1..)?.parse().ok()?;
                if !(-30..=30).contains(&e) {
                    return None;
                }
                (10f64.powi(e), Format::DecimalExponent)
            }
            _ => return None,
        };
        let value = base * mult;
        value.is_finite().then_some(Quantity { value, format })
    }

    /// Compares two quantities by value.
    pub fn compare(&self, other: &Quantity) -> Ordering {
        self.value
            .partial_cmp(&other.value)
            .unwrap_or(Ordering::Equal)
    }
}

/// An exact decimal number, `mantissa × 10^exponent`; used for quantity arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i128,
    pub exponent: i32,
}

/// A quantity kept exactly (as Kubernetes' `resource.Quantity` does) for arithmetic and canonical printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactQuantity {
    pub value: Decimal,
    pub format: Format,
}

/// Smallest exponent Kubernetes keeps: values below `1n` are rounded up to nano precision.
const NANO: i32 = -9;

impl Decimal {
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        exponent: 0,
    };

    /// The value as an (approximate) float.
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.exponent)
    }

    /// Both values rescaled to the smaller exponent; `None` on overflow.
    fn aligned(self, other: Decimal) -> Option<(i128, i128, i32)> {
        let exp = self.exponent.min(other.exponent);
        let a = self
            .mantissa
            .checked_mul(pow10(self.exponent.checked_sub(exp)?)?)?;
        let b = other
            .mantissa
            .checked_mul(pow10(other.exponent.checked_sub(exp)?)?)?;
        Some((a, b, exp))
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let (a, b, exponent) = self.aligned(other)?;
        Some(Decimal {
            mantissa: a.checked_add(b)?,
            exponent,
        })
    }

    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        let (a, b, exponent) = self.aligned(other)?;
        Some(Decimal {
            mantissa: a.checked_sub(b)?,
            exponent,
        })
    }

    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            exponent: self.exponent.checked_add(other.exponent)?,
        })
    }

    /// Quotient truncated toward zero at the finer of the two operands' precisions
    /// (`inf.Dec.QuoRound(.., RoundDown)` with the larger scale); `None` on zero divisor or overflow.
    pub fn checked_div_truncated(self, other: Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let exponent = self.exponent.min(other.exponent);
        // self / other = (ma / mb) × 10^(ea - eb); we want q × 10^exponent.
        let shift = self
            .exponent
            .checked_sub(other.exponent)?
            .checked_sub(exponent)?;
        let (num, den) = if shift >= 0 {
            (self.mantissa.checked_mul(pow10(shift)?)?, other.mantissa)
        } else {
            (self.mantissa, other.mantissa.checked_mul(pow10(-shift)?)?)
        };
        Some(Decimal {
            mantissa: num.checked_div(den)?,
            exponent,
        })
    }

    /// Parses a plain decimal (`12`, `-1.5`, `.5`); `None` otherwise.
    pub fn parse(s: &str) -> Option<Decimal> {
        let (negative, body) = match s.as_bytes().first()? {
            b'-' => (true, s.get(1..)?),
            b'+' => (false, s.get(1..)?),
            _ => (false, s),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let exponent = -i32::try_from(frac.len()).ok()?;
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            exponent,
        })
    }
}

fn pow10(exp: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(exp).ok()?)
}

impl ExactQuantity {
    /// Parses a quantity the way `resource.ParseQuantity` does, keeping the value exact.
    pub fn parse(s: &str) -> Option<ExactQuantity> {
        let bytes = s.as_bytes();
        let mut i = usize::from(matches!(bytes.first(), Some(b'+') | Some(b'-')));
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
        {
            i += 1;
        }
        let number = Decimal::parse(s.get(..i)?)?;
        let suffix = s.get(i..)?;
        let (decimal_exp, binary_pow, format) = match suffix {
            "" => (0, 0, Format::DecimalSi),
            "n" => (-9, 0, Format::DecimalSi),
            "u" => (-6, 0, Format::DecimalSi),
            "m" => (-3, 0, Format::DecimalSi),
            "k" => (3, 0, Format::DecimalSi),
            "M" => (6, 0, Format::DecimalSi),
            "G" => (9, 0, Format::DecimalSi),
            "T" => (12, 0, Format::DecimalSi),
            "P" => (15, 0, Format::DecimalSi),
            "E" => (18, 0, Format::DecimalSi),
            "Ki" => (0, 1, Format::BinarySi),
            "Mi" => (0, 2, Format::BinarySi),
            "Gi" => (0, 3, Format::BinarySi),
            "Ti" => (0, 4, Format::BinarySi),
            "Pi" => (0, 5, Format::BinarySi),
            "Ei" => (0, 6, Format::BinarySi),
            exp if exp.starts_with(['e', 'E']) => {
                let e: i32 = exp.get(1..)?.parse().ok()?;
                if !(-30..=30).contains(&e) {
                    return None;
                }
                (e, 0, Format::DecimalExponent)
            }
            _ => return None,
        };
        let mut value = Decimal {
            mantissa: number.mantissa,
            exponent: number.exponent.checked_add(decimal_exp)?,
        };
        if binary_pow > 0 {
            value.mantissa = value
                .mantissa
                .checked_mul(1024i128.checked_pow(binary_pow)?)?;
            if value.exponent < 0 {
                // Kubernetes keeps fractional binary quantities at nano precision.
                value = rescale_up(value, NANO)?;
            }
        }
        if value.exponent < NANO {
            value = round_up_to(value, NANO);
        }
        Some(ExactQuantity { value, format })
    }

    /// The Kubernetes canonical string (`Quantity.String()`), e.g. `1536Mi`, `500m`, `1k`, `1e3`.
    pub fn canonical(&self) -> String {
        let mut v = self.value;
        if v.mantissa == 0 {
            return "0".to_string();
        }
        if v.exponent < NANO {
            v = round_up_to(v, NANO);
        }
        let sign = if v.mantissa < 0 { "-" } else { "" };
        let mut format = self.format;
        if format == Format::BinarySi {
            match integer_value(v) {
                Some(n) if n.unsigned_abs() >= 1024 => {
                    let mut n = n.unsigned_abs();
                    let mut power = 0usize;
                    while n % 1024 == 0 && power < 6 {
                        n /= 1024;
                        power += 1;
                    }
                    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                        .get(power)
                        .copied()
                        .unwrap_or("");
                    return format!("{sign}{n}{suffix}");
                }
                // Small or fractional binary values are shown as decimal SI to avoid rounding.
                _ => format = Format::DecimalSi,
            }
        }
        let mut mantissa = v.mantissa.unsigned_abs();
        let mut exponent = v.exponent;
        while mantissa.is_multiple_of(10) && mantissa != 0 {
            mantissa /= 10;
            exponent += 1;
        }
        // Scaling appends zeros to the digits rather than multiplying: a mantissa near the top
        // of i128 would overflow, and Kubernetes prints the exact digits whatever their count.
        let mut zeros = 0usize;
        while exponent.rem_euclid(3) != 0 {
            zeros += 1;
            exponent -= 1;
        }
        if format == Format::DecimalExponent {
            let digits = format!("{mantissa}{}", "0".repeat(zeros));
            return if exponent == 0 {
                format!("{sign}{digits}")
            } else {
                format!("{sign}{digits}e{exponent}")
            };
        }
        while exponent > 18 {
            zeros += 3;
            exponent -= 3;
        }
        let mantissa = format!("{mantissa}{}", "0".repeat(zeros));
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

fn integer_value(v: Decimal) -> Option<i128> {
    if v.exponent >= 0 {
        v.mantissa.checked_mul(pow10(v.exponent)?)
    } else {
        let d = pow10(-v.exponent)?;
        (v.mantissa % d == 0).then_some(v.mantissa / d)
    }
}

/// Same value at a lower exponent (exact); `None` on overflow.
fn rescale_up(v: Decimal, exponent: i32) -> Option<Decimal> {
    let shift = v.exponent.checked_sub(exponent)?;
    if shift < 0 {
        return Some(v);
    }
    Some(Decimal {
        mantissa: v.mantissa.checked_mul(pow10(shift)?)?,
        exponent,
    })
}

/// Rounds away from zero to `exponent` precision (Kubernetes' `RoundUp` to nano).
fn round_up_to(v: Decimal, exponent: i32) -> Decimal {
    let shift = exponent.saturating_sub(v.exponent);
    let Some(d) = pow10(shift) else {
        // Far below precision: the smallest representable non-zero value.
        return Decimal {
            mantissa: v.mantissa.signum(),
            exponent,
        };
    };
    let q = v.mantissa / d;
    let r = v.mantissa % d;
    Decimal {
        mantissa: q + r.signum(),
        exponent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_of_a_mantissa_near_the_i128_limit_keeps_every_digit() {
        // 38 significant digits at 10^-8: printing in nano units needs one more digit than
        // i128 holds, which once saturated to 2^128 - 1.
        let q = ExactQuantity::parse("644444414444440000000000000000.05410823").unwrap();
        assert_eq!(q.canonical(), "644444414444440000000000000000054108230n");
        let q = ExactQuantity::parse("99999999999999999999999999999999999999e30").unwrap();
        assert_eq!(q.canonical(), "99999999999999999999999999999999999999e30");
        let q = ExactQuantity::parse("99999999999999999999999999999999999999E").unwrap();
        assert_eq!(q.canonical(), "99999999999999999999999999999999999999E");
    }

    #[test]
    fn parses_suffixes() {
        assert_eq!(Quantity::parse("1Gi").map(|q| q.value), Some(1073741824.0));
        assert_eq!(Quantity::parse("500m").map(|q| q.value), Some(0.5));
        assert_eq!(Quantity::parse("2e3").map(|q| q.value), Some(2000.0));
        assert_eq!(Quantity::parse("10").map(|q| q.value), Some(10.0));
        assert!(Quantity::parse("10x").is_none());
        assert!(Quantity::parse("abc").is_none());
        assert!(Quantity::parse("").is_none());
        assert!(Quantity::parse("1h").is_none());
    }

    #[test]
    fn compares_across_units() {
        let a = Quantity::parse("1Gi").unwrap();
        let b = Quantity::parse("1024Mi").unwrap();
        assert_eq!(a.compare(&b), Ordering::Equal);
        let c = Quantity::parse("1G").unwrap();
        assert_eq!(c.compare(&a), Ordering::Less);
    }

    #[test]
    fn canonical_forms_match_kubernetes() {
        let cases = [
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1.5", "1500m"),
            ("0.5", "500m"),
            ("500m", "500m"),
            ("1e3", "1e3"),
            ("100Ki", "100Ki"),
            ("512", "512"),
            ("0", "0"),
            ("0.1n", "1n"),
            ("-1k", "-1k"),
            ("1.5Gi", "1536Mi"),
        ];
        for (input, want) in cases {
            let q = ExactQuantity::parse(input).unwrap();
            assert_eq!(q.canonical(), want, "{input}");
        }
        assert!(ExactQuantity::parse("1h").is_none());
        assert!(ExactQuantity::parse(".").is_none());
        assert!(ExactQuantity::parse("").is_none());
        assert!(ExactQuantity::parse(" 1").is_none());
    }

    #[test]
    fn decimal_arithmetic() {
        let a = Decimal::parse("1.5").unwrap();
        let b = Decimal::parse("2").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_f64(), 3.5);
        assert_eq!(a.checked_sub(b).unwrap().to_f64(), -0.5);
        assert_eq!(a.checked_mul(b).unwrap().to_f64(), 3.0);
        let q = Decimal::parse("1500")
            .unwrap()
            .checked_div_truncated(Decimal::parse("7").unwrap());
        assert_eq!(
            q,
            Some(Decimal {
                mantissa: 214,
                exponent: 0
            })
        );
        assert!(a.checked_div_truncated(Decimal::ZERO).is_none());
    }
}
