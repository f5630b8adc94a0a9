//! Check results shared by the podSecurity rules of one request: a baseline rule and two
//! restricted rules with different exclusions run many of the same checks on the same pod.
//! Only passes are kept: a failure's errors would have to be copied, and failures are few.

use std::sync::Mutex;

use super::checks::PodView;
use super::{Finding, Level, Version, selected_checks_keyed};

/// Check keys the cache holds (the table has a few dozen checks and versions); a check past
/// them is always run.
const KEYS: usize = 512;

/// The checks that passed on one request's resource.
#[derive(Default)]
pub struct CheckCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The address of the resource the results are for (0: none yet).
    resource: usize,
    /// Bit `key` set: that check passed.
    passed: [u64; KEYS / 64],
}

impl CheckCache {
    /// [`super::run_checks_of`] (all checks) on the pod of `resource`, a check that passed on
    /// it not run again.
    pub(crate) fn run(
        &self,
        level: Level,
        version: Version,
        pod: &PodView<'_>,
        resource: &serde_json::Value,
    ) -> Vec<Finding> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let address = std::ptr::from_ref(resource) as usize;
        if state.resource != address {
            state.resource = address;
            state.passed = [0; KEYS / 64];
        }
        let mut findings = Vec::new();
        for (key, id, _, check_fn) in selected_checks_keyed(level, version) {
            let (word, bit) = (key / 64, 1u64 << (key % 64));
            if state.passed.get(word).is_some_and(|w| w & bit != 0) {
                continue;
            }
            match check_fn(pod) {
                Some(v) => findings.push(Finding::new(id, v)),
                None => {
                    if let Some(w) = state.passed.get_mut(word) {
                        *w |= bit;
                    }
                }
            }
        }
        findings
    }
}
