//! Kubernetes quantities: parsing never panics, a quantity equals itself, and the canonical
//! form of an exact quantity parses back to the same value.
#![no_main]

use std::cmp::Ordering;

use kybern_engine::quantity::{Decimal, ExactQuantity, Quantity};
use libfuzzer_sys::fuzz_target;

fn exponent_beyond_bound(canonical: &str) -> bool {
    let digits = canonical.bytes().filter(u8::is_ascii_digit).count();
    let exponent = canonical
        .split_once(['e', 'E'])
        .and_then(|(_, e)| e.parse::<i32>().ok());
    digits > 38 || exponent.is_some_and(|e| !(-30..=30).contains(&e))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(q) = Quantity::parse(text) {
        if !q.value.is_nan() {
            assert_eq!(q.compare(&q), Ordering::Equal);
        }
    }
    if let Some(q) = ExactQuantity::parse(text) {
        let canonical = q.canonical();
        match ExactQuantity::parse(&canonical) {
            // The same value; not always the same string, as in Kubernetes (`4812.5Ki` prints
            // as `4928000`, which reads back as a decimal quantity and prints as `4928k`).
            Some(back) => assert!(
                back.value
                    .checked_sub(q.value)
                    .is_none_or(|d| d.mantissa == 0),
                "{text:?} -> {canonical:?} reads back as another value"
            ),
            // The parser takes exponents up to ±30 and mantissas of i128 only, while the printer
            // writes every digit (`1000000e30` prints as `1e36`): only those may not read back.
            None => assert!(
                exponent_beyond_bound(&canonical),
                "{text:?} -> {canonical:?} does not parse"
            ),
        }
        let _ = q.value.checked_add(q.value);
        let _ = q.value.checked_mul(q.value);
        let _ = q.value.checked_div_truncated(q.value);
        let _ = q.value.checked_sub(Decimal::ZERO);
    }
});
