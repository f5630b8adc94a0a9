//! Field paths an expression reads more than once (`has(c.securityContext) &&
//! c.securityContext.runAsNonRoot == true`) are read once per evaluation: each gets an entry in
//! the evaluation's cache, emptied when the comprehension variable the path starts from takes
//! its next element. Selection is pure, so a kept value is the value a second read would give;
//! faults are never kept.

use super::{MapKey, Node, Var};
use std::collections::HashMap;

/// Where a path starts: an input (constant during one evaluation) or a comprehension's element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Root {
    Var(Var),
    Element(usize),
}

type Path = (Root, Vec<String>);

/// The nodes `$n` evaluates directly, borrowed as `$n` is (`iter` or `iter_mut` for lists, and
/// the matching `&`/`&mut` for a comprehension's parts): one body for both borrows.
macro_rules! children_of {
    ($n:expr, $iter:ident, $($borrow:tt)+) => {
        match $n {
            Node::Lit(_) | Node::Var(_) | Node::Local(_) => Vec::new(),
            Node::Select { operand: a, .. }
            | Node::OptSelect(a, _)
            | Node::Not(a)
            | Node::NotStrictlyFalse(a)
            | Node::Neg(a)
            | Node::Size(a)
            | Node::HasValue(a)
            | Node::OptValue(a)
            | Node::Append(_, a)
            | Node::Cached(_, a) => vec![a],
            Node::Index(a, b)
            | Node::OptIndex(a, b)
            | Node::And(a, b)
            | Node::Or(a, b)
            | Node::Binary(_, a, b)
            | Node::In(a, b)
            | Node::OrValue(a, b)
            | Node::Str(_, a, b) => vec![a, b],
            Node::Cond(a, b, c) => vec![a, b, c],
            Node::List(items) => items.$iter().collect(),
            Node::Map(entries) => entries
                .$iter()
                .flat_map(|(k, v)| {
                    let k = match k {
                        MapKey::Lit(_) => None,
                        MapKey::Computed(k) => Some(k),
                    };
                    k.into_iter().chain(std::iter::once(v))
                })
                .collect(),
            Node::Comprehension(c) => {
                let c = $($borrow)+ **c;
                vec![
                    $($borrow)+ c.range,
                    $($borrow)+ c.init,
                    $($borrow)+ c.cond,
                    $($borrow)+ c.step,
                    $($borrow)+ c.result,
                ]
            }
            Node::Call(c) => c.args.$iter().collect(),
        }
    };
}

/// The nodes `n` evaluates directly.
pub fn children(n: &Node) -> Vec<&Node> {
    children_of!(n, iter, &)
}

fn children_mut(n: &mut Node) -> Vec<&mut Node> {
    children_of!(n, iter_mut, &mut)
}

/// The path `n` reads, when it is a plain selection (not `has()`) from an input or a
/// comprehension's element (`elements`: those slots; an accumulator changes within a step).
fn path(n: &Node, elements: &[usize]) -> Option<Path> {
    let Node::Select {
        operand,
        field,
        test: false,
    } = n
    else {
        return None;
    };
    let (root, mut fields) = match operand.as_ref() {
        Node::Var(v) => (Root::Var(v.clone()), Vec::new()),
        Node::Local(i) if elements.contains(i) => (Root::Element(*i), Vec::new()),
        other => path(other, elements)?,
    };
    fields.push(field.clone());
    Some((root, fields))
}

fn element_slots(n: &Node, out: &mut Vec<usize>) {
    if let Node::Comprehension(c) = n {
        out.push(c.iter);
    }
    for c in children(n) {
        element_slots(c, out);
    }
}

fn count(n: &Node, elements: &[usize], seen: &mut HashMap<Path, usize>) {
    if let Some(p) = path(n, elements) {
        *seen.entry(p).or_default() += 1;
    }
    for c in children(n) {
        count(c, elements, seen);
    }
}

/// Wraps every path read more than once in a [`Node::Cached`]; returns the number of cache
/// entries.
pub fn cache_repeated(root: &mut Node) -> usize {
    let mut elements = Vec::new();
    element_slots(root, &mut elements);
    let mut seen = HashMap::new();
    count(root, &elements, &mut seen);
    let mut index: HashMap<Path, usize> = HashMap::new();
    for (p, n) in seen {
        if n > 1 {
            let next = index.len();
            index.insert(p, next);
        }
    }
    if index.is_empty() {
        return 0;
    }
    wrap(root, &elements, &index);
    clear_on_next_element(root, &index);
    index.len()
}

fn wrap(n: &mut Node, elements: &[usize], index: &HashMap<Path, usize>) {
    let entry = path(n, elements).and_then(|p| index.get(&p).copied());
    for c in children_mut(n) {
        wrap(c, elements, index);
    }
    if let Some(i) = entry {
        let inner = std::mem::replace(n, Node::Local(usize::MAX));
        *n = Node::Cached(i, Box::new(inner));
    }
}

/// Tells each comprehension which entries start from its element.
fn clear_on_next_element(n: &mut Node, index: &HashMap<Path, usize>) {
    if let Node::Comprehension(c) = n {
        c.element_caches = index
            .iter()
            .filter(|((root, _), _)| *root == Root::Element(c.iter))
            .map(|(_, i)| *i)
            .collect();
    }
    for c in children_mut(n) {
        clear_on_next_element(c, index);
    }
}
