//! What the controller remembers of a resource's results: a short hash of them, without their
//! timestamps, so that a rescan finding the same results is recognised and writes nothing. The
//! hash is also kept on the report (annotation), so a restarted controller rewrites nothing
//! that has not changed.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The report annotation holding the hash of its results.
pub const ANNOTATION: &str = "reports.kybern.io/results-hash";

/// A results hash: the first 8 bytes of a SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResultsHash(pub u64);

impl ResultsHash {
    /// The hash of `results` (each a report result entry; `timestamp` is left out).
    pub fn of(results: &[Map<String, Value>]) -> ResultsHash {
        let mut h = Sha256::new();
        for r in results {
            for (k, v) in r {
                if k == "timestamp" {
                    continue;
                }
                h.update(k.as_bytes());
                h.update([0]);
                h.update(v.to_string().as_bytes());
                h.update([0]);
            }
            h.update([1]);
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        ResultsHash(u64::from_be_bytes(first))
    }

    /// As written in the annotation.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Read back from the annotation.
    pub fn from_hex(s: &str) -> Option<ResultsHash> {
        u64::from_str_radix(s, 16).ok().map(ResultsHash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(result: &str, seconds: u64) -> Map<String, Value> {
        json!({"policy": "p", "rule": "r", "result": result, "timestamp": {"seconds": seconds}})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn timestamps_do_not_change_the_hash_and_results_do() {
        let a = ResultsHash::of(&[entry("fail", 1)]);
        assert_eq!(a, ResultsHash::of(&[entry("fail", 2)]));
        assert_ne!(a, ResultsHash::of(&[entry("pass", 1)]));
        assert_ne!(a, ResultsHash::of(&[entry("fail", 1), entry("fail", 1)]));
        assert_eq!(ResultsHash::from_hex(&a.to_hex()), Some(a));
    }
}
