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

#[cfg(test)]
mod tests {
    use super::*;

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
}
