//! Work bounds of one request's evaluation that no single expression can see: the data loaded by
//! context entries and the foreach elements visited, summed over every rule of the request.
//!
//! A limit hit is a rule error with a message naming the limit, never a hang or an abort: a
//! policy that chains context variables doubling a string, or nests foreach loops over large
//! lists, stops at the bound instead of growing without end.

use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes (as compact JSON) that context entries may load in one request: Kyverno's
/// `maxContextSize` default (2 MiB).
pub const MAX_CONTEXT_BYTES: usize = 2 * 1024 * 1024;

/// Foreach elements one request may visit, nested loops and every rule included. Loops over the
/// containers, volumes or env of real Pods stay far below it; nested loops over large lists (ten
/// levels of a thousand elements) stop here.
pub const MAX_FOREACH_ELEMENTS: usize = 100_000;

/// What one request has used so far; shared by every context cloned from the request's.
#[derive(Debug, Default)]
pub struct RequestBudget {
    context_bytes: AtomicUsize,
    foreach_elements: AtomicUsize,
}

impl RequestBudget {
    /// Charges a value loaded by the context entry `name`; `Err` is the rule error.
    pub fn charge_context(&self, name: &str, value: &Value) -> Result<(), String> {
        let used = self.context_bytes.load(Ordering::Relaxed);
        let room = MAX_CONTEXT_BYTES.saturating_sub(used);
        match json_len_within(value, room) {
            Some(len) => {
                self.context_bytes.fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            None => Err(format!(
                "context entry {name}: the data loaded by context entries exceeds the context size limit of {MAX_CONTEXT_BYTES} bytes (maxContextSize)"
            )),
        }
    }

    /// Charges `count` foreach elements about to be visited; `Err` is the rule error.
    pub fn charge_foreach(&self, count: usize) -> Result<(), String> {
        let total = self
            .foreach_elements
            .fetch_add(count, Ordering::Relaxed)
            .saturating_add(count);
        if total > MAX_FOREACH_ELEMENTS {
            return Err(format!(
                "foreach would visit more than {MAX_FOREACH_ELEMENTS} elements in this request"
            ));
        }
        Ok(())
    }
}

/// The length of `value` as compact JSON, or `None` once it passes `limit` (the value is not
/// serialised past that point).
pub fn json_len_within(value: &Value, limit: usize) -> Option<usize> {
    struct Counter {
        len: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.len = self.len.saturating_add(buf.len());
            if self.len > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { len: 0, limit };
    serde_json::to_writer(&mut counter, value).ok()?;
    Some(counter.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn context_data_is_charged_until_the_limit() {
        let budget = RequestBudget::default();
        let mib = json!("x".repeat(1024 * 1024));
        assert!(budget.charge_context("a", &mib).is_ok());
        let err = budget.charge_context("b", &mib).unwrap_err();
        assert_eq!(
            err,
            "context entry b: the data loaded by context entries exceeds the context size limit of 2097152 bytes (maxContextSize)"
        );
        assert!(budget.charge_context("c", &json!({"small": 1})).is_ok());
    }

    #[test]
    fn foreach_elements_are_counted_over_the_request() {
        let budget = RequestBudget::default();
        assert!(budget.charge_foreach(MAX_FOREACH_ELEMENTS - 1).is_ok());
        assert!(budget.charge_foreach(1).is_ok());
        assert!(budget.charge_foreach(1).is_err());
    }

    #[test]
    fn json_length_stops_at_the_limit() {
        assert_eq!(json_len_within(&json!({"a": [1, 2]}), 100), Some(11));
        assert_eq!(json_len_within(&json!("x".repeat(1000)), 100), None);
    }
}
