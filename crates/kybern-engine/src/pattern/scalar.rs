//! A scalar of a pattern with its string operators read once: alternatives (`|`), parts (`&`),
//! ranges and each operand's reading as a duration and a quantity, so that matching a resource
//! value only reads the value. Matches exactly as [`value_matches`] does.

use serde_json::Value;

use super::value::{
    IN_RANGE, NOT_IN_RANGE, Operator, compare_parsed, operator_of, range_sides, value_matches,
};
use crate::quantity::Quantity;

#[derive(Debug, Clone)]
pub(crate) struct ScalarPattern {
    value: Value,
    /// For a string: its alternatives, each a list of parts that must all hold.
    alternatives: Vec<Vec<Part>>,
}

#[derive(Debug, Clone)]
enum Part {
    One(Comparison),
    /// `a-b`: both sides hold.
    InRange(Comparison, Comparison),
    /// `a!-b`: either side holds.
    NotInRange(Comparison, Comparison),
    /// A range the operator detection accepted but whose sides could not be read.
    Never,
}

#[derive(Debug, Clone)]
struct Comparison {
    op: Operator,
    operand: String,
    duration: Option<i128>,
    quantity: Option<Quantity>,
}

impl Comparison {
    fn new(op: Operator, operand: &str) -> Self {
        Comparison {
            op,
            operand: operand.to_string(),
            duration: crate::duration::parse(operand),
            quantity: Quantity::parse(operand),
        }
    }

    fn matches(&self, value: &Value) -> bool {
        compare_parsed(value, &self.operand, self.op, self.duration, self.quantity)
    }
}

impl Part {
    /// One `&`-separated part, as `string_pattern` reads it.
    fn new(part: &str) -> Self {
        match operator_of(part) {
            Operator::InRange => match range_sides(&IN_RANGE, part) {
                Some((l, r)) => Part::InRange(
                    Comparison::new(Operator::MoreEqual, l),
                    Comparison::new(Operator::LessEqual, r),
                ),
                None => Part::Never,
            },
            Operator::NotInRange => match range_sides(&NOT_IN_RANGE, part) {
                Some((l, r)) => Part::NotInRange(
                    Comparison::new(Operator::Less, l),
                    Comparison::new(Operator::More, r),
                ),
                None => Part::Never,
            },
            op => Part::One(Comparison::new(
                op,
                part.get(op.prefix().len()..).unwrap_or("").trim(),
            )),
        }
    }

    fn matches(&self, value: &Value) -> bool {
        match self {
            Part::One(c) => c.matches(value),
            Part::InRange(low, high) => low.matches(value) && high.matches(value),
            Part::NotInRange(low, high) => low.matches(value) || high.matches(value),
            Part::Never => false,
        }
    }
}

impl ScalarPattern {
    pub(crate) fn new(value: Value) -> Self {
        let alternatives = match &value {
            Value::String(p) => p
                .split('|')
                .map(|alternative| {
                    alternative
                        .trim_matches(' ')
                        .split('&')
                        .map(|part| Part::new(part.trim_matches(' ')))
                        .collect()
                })
                .collect(),
            _ => Vec::new(),
        };
        ScalarPattern {
            value,
            alternatives,
        }
    }

    pub(crate) fn value(&self) -> &Value {
        &self.value
    }

    pub(crate) fn matches(&self, resource: &Value) -> bool {
        let Value::String(p) = &self.value else {
            return value_matches(resource, &self.value);
        };
        if matches!(resource, Value::String(s) if s == p) {
            return true;
        }
        self.alternatives
            .iter()
            .any(|parts| parts.iter().all(|part| part.matches(resource)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every scalar shape the pattern language has, against values of every type: the compiled
    /// form must agree with the reading made per comparison.
    #[test]
    fn agrees_with_value_matches() {
        let patterns = [
            json!("a"),
            json!("a | b"),
            json!("a|b"),
            json!(">1 & <10"),
            json!(">1&<10"),
            json!("1-10"),
            json!("1!-10"),
            json!("1Gi-2Gi"),
            json!("-5--1"),
            json!("<=1024Mi"),
            json!(">1h"),
            json!("<1h"),
            json!("!*:latest"),
            json!("nginx:*"),
            json!("?*"),
            json!("*"),
            json!(""),
            json!("!"),
            json!(">"),
            json!(" a |  b & c "),
            json!("1.5E+00"),
            json!("1.5"),
            json!("80*"),
            json!("true"),
            json!(true),
            json!(80),
            json!(80.5),
            Value::Null,
            json!({}),
            json!([1]),
        ];
        let values = [
            json!("a"),
            json!("b"),
            json!("c"),
            json!(5),
            json!(11),
            json!(-3),
            json!(1.5),
            json!("1500Mi"),
            json!("2Gi"),
            json!("90m"),
            json!("30m"),
            json!("nginx:latest"),
            json!("nginx:1"),
            json!(""),
            json!(true),
            json!(8080),
            json!(80),
            Value::Null,
            json!({"a": 1}),
            json!([1]),
        ];
        for p in &patterns {
            let compiled = ScalarPattern::new(p.clone());
            for v in &values {
                assert_eq!(
                    compiled.matches(v),
                    value_matches(v, p),
                    "pattern {p} against {v}"
                );
            }
        }
    }
}
