use super::*;

fn run(doc: Value, ops: Value) -> Result<Value, PatchError> {
    apply(&doc, &ops)
}

#[test]
fn operations_apply_with_kyverno_leniency() {
    let doc = json!({"a": {"b": [1, 2, 3]}, "c": "x", "k/e~y": 1});
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "add sets an object member",
            json!([{"op": "add", "path": "/d", "value": true}]),
            json!({"a": {"b": [1, 2, 3]}, "c": "x", "k/e~y": 1, "d": true}),
        ),
        (
            "add inserts into an array",
            json!([{"op": "add", "path": "/a/b/1", "value": 9}]),
            json!({"a": {"b": [1, 9, 2, 3]}, "c": "x", "k/e~y": 1}),
        ),
        (
            "add with - appends",
            json!([{"op": "add", "path": "/a/b/-", "value": 4}]),
            json!({"a": {"b": [1, 2, 3, 4]}, "c": "x", "k/e~y": 1}),
        ),
        (
            "add with -1 inserts at the end",
            json!([{"op": "add", "path": "/a/b/-1", "value": 4}]),
            json!({"a": {"b": [1, 2, 3, 4]}, "c": "x", "k/e~y": 1}),
        ),
        (
            "add creates missing parents, arrays before index tokens",
            json!([{"op": "add", "path": "/m/n/0", "value": "v"}, {"op": "add", "path": "/p/q", "value": 1}]),
            json!({"a": {"b": [1, 2, 3]}, "c": "x", "k/e~y": 1, "m": {"n": ["v"]}, "p": {"q": 1}}),
        ),
        (
            "remove deletes a member",
            json!([{"op": "remove", "path": "/c"}]),
            json!({"a": {"b": [1, 2, 3]}, "k/e~y": 1}),
        ),
        (
            "remove with a negative index counts from the end",
            json!([{"op": "remove", "path": "/a/b/-1"}]),
            json!({"a": {"b": [1, 2]}, "c": "x", "k/e~y": 1}),
        ),
        (
            "remove of a missing path is ignored",
            json!([{"op": "remove", "path": "/nope/deeper"}, {"op": "remove", "path": "/a/b/7"}, {"op": "remove", "path": "/zz"}]),
            doc.clone(),
        ),
        (
            "replace swaps a value",
            json!([{"op": "replace", "path": "/a/b/0", "value": {"x": 1}}]),
            json!({"a": {"b": [{"x": 1}, 2, 3]}, "c": "x", "k/e~y": 1}),
        ),
        (
            "move relocates a value",
            json!([{"op": "move", "from": "/c", "path": "/a/c"}]),
            json!({"a": {"b": [1, 2, 3], "c": "x"}, "k/e~y": 1}),
        ),
        (
            "copy duplicates a value",
            json!([{"op": "copy", "from": "/a/b/2", "path": "/a/b/0"}]),
            json!({"a": {"b": [3, 1, 2, 3]}, "c": "x", "k/e~y": 1}),
        ),
        (
            "test passes on an equal value, numbers by value",
            json!([{"op": "test", "path": "/a/b/0", "value": 1.0}, {"op": "test", "path": "/c", "value": "x"}]),
            doc.clone(),
        ),
        (
            "~1 and ~0 unescape to / and ~",
            json!([{"op": "replace", "path": "/k~1e~0y", "value": 2}]),
            json!({"a": {"b": [1, 2, 3]}, "c": "x", "k/e~y": 2}),
        ),
        (
            "an empty path replaces the whole document",
            json!([{"op": "replace", "path": "", "value": {"z": 1}}]),
            json!({"z": 1}),
        ),
    ];
    for (name, ops, want) in cases {
        assert_eq!(run(doc.clone(), ops).unwrap(), want, "{name}");
    }
}

#[test]
fn failing_operations_are_errors() {
    let doc = json!({"a": [1], "s": "x"});
    let cases: Vec<(&str, Value)> = vec![
        (
            "test of a different value",
            json!([{"op": "test", "path": "/s", "value": "y"}]),
        ),
        (
            "replace of a missing key",
            json!([{"op": "replace", "path": "/nope", "value": 1}]),
        ),
        (
            "add past the end of an array",
            json!([{"op": "add", "path": "/a/5", "value": 1}]),
        ),
        (
            "add below a scalar",
            json!([{"op": "add", "path": "/s/x", "value": 1}]),
        ),
        (
            "move from a missing path",
            json!([{"op": "move", "from": "/nope", "path": "/b"}]),
        ),
        (
            "copy from a missing path",
            json!([{"op": "copy", "from": "/nope", "path": "/b"}]),
        ),
        (
            "a path without a leading slash",
            json!([{"op": "add", "path": "b", "value": 1}]),
        ),
        (
            "an unknown operation",
            json!([{"op": "frobnicate", "path": "/a"}]),
        ),
        ("add without a value", json!([{"op": "add", "path": "/b"}])),
        (
            "a move into its own child",
            json!([{"op": "move", "from": "/a", "path": "/a/0"}]),
        ),
    ];
    for (name, ops) in cases {
        assert!(run(doc.clone(), ops).is_err(), "{name}");
    }
}

#[test]
fn operations_parse_from_lists_and_yaml_or_json_strings() {
    let want = vec![json!({"op": "add", "path": "/a", "value": 1})];
    let cases = [
        json!([{"op": "add", "path": "/a", "value": 1}]),
        json!("- op: add\n  path: /a\n  value: 1\n"),
        json!("[{\"op\": \"add\", \"path\": \"/a\", \"value\": 1}]"),
    ];
    for input in cases {
        assert_eq!(parse_operations(&input).unwrap(), want, "{input}");
    }
    assert_eq!(parse_operations(&json!("  ")).unwrap(), Vec::<Value>::new());
    assert!(parse_operations(&json!("op: add")).is_err());
    assert!(parse_operations(&json!([1])).is_err());
    assert!(parse_operations(&json!(3)).is_err());
    // A string is accepted by `apply` too.
    assert_eq!(
        apply(&json!({}), &json!("- {op: add, path: /a/b, value: x}")).unwrap(),
        json!({"a": {"b": "x"}})
    );
}

#[test]
fn diff_is_minimal_and_ordered() {
    let a = json!({"b": 1, "a": {"x": [1, 2, 3]}, "gone": true, "t": "s"});
    let b = json!({"b": 2, "a": {"x": [1, 5]}, "new/key": {"k": 1}, "t": 7});
    assert_eq!(
        diff(&a, &b),
        vec![
            json!({"op": "remove", "path": "/a/x/2"}),
            json!({"op": "replace", "path": "/a/x/1", "value": 5}),
            json!({"op": "replace", "path": "/b", "value": 2}),
            json!({"op": "add", "path": "/new~1key", "value": {"k": 1}}),
            json!({"op": "replace", "path": "/t", "value": 7}),
            json!({"op": "remove", "path": "/gone"}),
        ]
    );
    assert!(diff(&a, &a).is_empty());
}

#[test]
fn diff_inserts_and_removes_named_items_where_they_are() {
    let pod = json!({"containers": [{"name": "app", "image": "a"}, {"name": "web", "image": "w"}]});
    let injected = json!({"containers": [
        {"name": "sidecar", "image": "s"},
        {"name": "app", "image": "a", "securityContext": {"runAsNonRoot": true}},
        {"name": "web", "image": "w"}]});
    assert_eq!(
        diff(&pod, &injected),
        vec![
            json!({"op": "add", "path": "/containers/0", "value": {"name": "sidecar", "image": "s"}}),
            json!({"op": "add", "path": "/containers/1/securityContext",
                   "value": {"runAsNonRoot": true}}),
        ]
    );
    assert_eq!(
        diff(&injected, &pod),
        vec![
            json!({"op": "remove", "path": "/containers/0"}),
            json!({"op": "remove", "path": "/containers/0/securityContext"}),
        ]
    );
    assert_eq!(
        diff(&json!(["a", "c"]), &json!(["x", "a", "b", "c", "y"])),
        vec![
            json!({"op": "add", "path": "/0", "value": "x"}),
            json!({"op": "add", "path": "/2", "value": "b"}),
            json!({"op": "add", "path": "/4", "value": "y"}),
        ]
    );
}

#[test]
fn diff_round_trips_through_apply() {
    let values = [
        json!({}),
        json!({"a": null}),
        json!({"a": [null, 1]}),
        json!({"a": [1, {"b": [2, 3]}, "x"], "c": {"d": {"e": "f"}}}),
        json!({"a": [], "c": {"d": null}, "~": {"/": 1}}),
        json!({"a": [3, 2, 1, 0], "c": "string", "n": 1.5}),
        json!({"a": [0, 3, 9, 2, 1, 0, 7], "c": "string"}),
        json!({"a": [{"name": "x"}, {"name": "y", "v": 1}, {"name": "x", "v": 2}]}),
        json!({"a": [{"name": "y", "v": 2}], "c": {"d": [{"name": "q"}]}}),
        json!({"a": [{"name": "z"}, {"name": "y"}, 3, {"name": "x"}]}),
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}}),
        json!([1, 2, 3]),
        json!("scalar"),
    ];
    for a in &values {
        for b in &values {
            let ops = Value::Array(diff(a, b));
            assert_eq!(&apply(a, &ops).unwrap(), b, "{a} -> {b} via {ops}");
        }
    }
}

#[test]
fn diff_handles_deep_documents_without_recursion() {
    let mut a = json!(1);
    let mut b = json!(2);
    // Built by hand: `json!` would serialize the nested value recursively.
    let wrap = |v: Value| Value::Object(Map::from_iter([("x".to_string(), v)]));
    for _ in 0..10_000 {
        a = wrap(a);
        b = wrap(b);
    }
    let ops = diff(&a, &b);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["op"], "replace");
    // Values this deep are torn down iteratively to keep the test's own stack safe.
    for v in [a, b] {
        let mut stack = vec![v];
        while let Some(mut v) = stack.pop() {
            if let Value::Object(m) = &mut v {
                stack.extend(std::mem::take(m).into_iter().map(|(_, c)| c));
            }
        }
    }
}
