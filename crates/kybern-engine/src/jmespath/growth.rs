//! A static bound on how much an expression can multiply its input. JMESPath has no loops, but
//! multi-selects inside pipes and projections copy what they are given: `[@, @][]` doubles its
//! input, and thirty of them in a pipe build a billion elements from one. The interpreter cannot
//! be interrupted, so such expressions are refused when they are compiled.

use jmespath::ast::Ast;

/// The most an expression may multiply its input by, at any step of its evaluation. Expressions
/// people write stay far below: the largest in Kyverno's policy library and test suites grows
/// its input 4 times.
pub const MAX_GROWTH: u64 = 4096;

/// Nesting past which the bound is not computed further (it is then the maximum).
const MAX_DEPTH: usize = 256;

/// The largest size, relative to the input, of any value the evaluation of `ast` builds.
pub fn growth(ast: &Ast) -> u64 {
    let mut max = 1;
    let _ = walk(ast, 1, &mut max, 0);
    max
}

/// Returns how much larger than its input `ast`'s result can be, given that its input is
/// `scale` times the root input; records the largest `scale × result` seen in `max`.
fn walk(ast: &Ast, scale: u64, max: &mut u64, depth: usize) -> u64 {
    if depth > MAX_DEPTH {
        *max = u64::MAX;
        return u64::MAX;
    }
    let d = depth + 1;
    let f = match ast {
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Slice { .. }
        | Ast::Literal { .. } => 1,
        // The right side runs on what the left side built (on each of its elements, for a
        // projection: together they are as large as the left side's result).
        Ast::Subexpr { lhs, rhs, .. } | Ast::Projection { lhs, rhs, .. } => {
            let l = walk(lhs, scale, max, d);
            let r = walk(rhs, scale.saturating_mul(l), max, d);
            l.saturating_mul(r)
        }
        Ast::Comparison { lhs, rhs, .. } => {
            walk(lhs, scale, max, d);
            walk(rhs, scale, max, d);
            1
        }
        Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            walk(lhs, scale, max, d).max(walk(rhs, scale, max, d))
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            walk(predicate, scale, max, d);
            walk(then, scale, max, d)
        }
        Ast::Not { node, .. } => {
            walk(node, scale, max, d);
            1
        }
        Ast::Flatten { node, .. }
        | Ast::ObjectValues { node, .. }
        | Ast::Expref { ast: node, .. } => walk(node, scale, max, d),
        // Each element is a copy of what its expression builds.
        Ast::MultiList { elements, .. } => elements
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(walk(e, scale, max, d))),
        Ast::MultiHash { elements, .. } => elements.iter().fold(0u64, |sum, kv| {
            sum.saturating_add(walk(&kv.value, scale, max, d))
        }),
        // An expression reference runs on what the other arguments give (`map`, `sort_by`, ...);
        // otherwise a function's result is at most as large as its arguments together.
        Ast::Function { args, .. } => {
            let (refs, values): (Vec<&Ast>, Vec<&Ast>) =
                args.iter().partition(|a| matches!(a, Ast::Expref { .. }));
            let given = values
                .iter()
                .fold(0u64, |sum, a| sum.saturating_add(walk(a, scale, max, d)))
                .max(1);
            let per_element = refs
                .iter()
                .map(|r| walk(r, scale.saturating_mul(given), max, d))
                .max()
                .unwrap_or(1);
            given.saturating_mul(per_element)
        }
    };
    *max = (*max).max(scale.saturating_mul(f));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(expr: &str) -> u64 {
        growth(&jmespath::parse(expr).unwrap())
    }

    #[test]
    fn paths_filters_and_functions_do_not_grow() {
        assert_eq!(of("request.object.metadata.name"), 1);
        assert_eq!(of("spec.containers[?name == 'a'].image | [0]"), 1);
        assert_eq!(of("length(spec.containers[])"), 1);
        assert_eq!(of("request.operation || 'BACKGROUND'"), 1);
    }

    #[test]
    fn multi_selects_grow_by_their_width_and_chains_multiply() {
        assert_eq!(
            of(
                "request.object.spec.[ephemeralContainers, initContainers, containers][].ports[].hostPort"
            ),
            3
        );
        assert_eq!(of("[@, @][] | [@, @][]"), 4);
        assert_eq!(of("items[].{a: @, b: @}"), 2);
        assert_eq!(of("map(&[@, @, @], items)"), 3);
    }

    #[test]
    fn doubling_thirty_times_is_over_the_bound() {
        let expr = ["[@, @][]"; 30].join(" | ");
        assert!(of(&expr) > MAX_GROWTH);
        let ok = ["[@, @][]"; 12].join(" | ");
        assert_eq!(of(&ok), 4096);
    }
}
