//! `KYBERN_BENCH_ITERATIONS=N`: each case whose `group/case` name contains the command line's
//! filter runs N times instead of being timed. On a shared machine the instructions of a fixed
//! count (`valgrind --tool=lackey --basic-counts=yes`, or callgrind for where they go) compare
//! two builds where wall time cannot.

use std::hint::black_box;

/// Runs `f` N times and returns true when fixed iterations were asked for (the case is then not
/// timed).
pub fn run_fixed<T>(name: &str, mut f: impl FnMut() -> T) -> bool {
    let Some(n) = std::env::var("KYBERN_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return false;
    };
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    if name.contains(&filter) {
        for _ in 0..n {
            black_box(f());
        }
    }
    true
}
