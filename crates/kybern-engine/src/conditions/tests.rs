use super::*;
use serde_json::json;

fn run(table: &[(&str, &str, Value, Value, bool)]) {
    for (name, op, key, value, want) in table {
        assert_eq!(
            evaluate(op, key, value),
            Ok(*want),
            "{name}: {key} {op} {value}"
        );
    }
}

#[test]
fn operator_names_are_case_insensitive_and_unknown_is_an_error() {
    assert!(is_known_operator("equals"));
    assert!(is_known_operator("ANYIN"));
    assert!(is_known_operator("DurationLessThanOrEquals"));
    assert!(!is_known_operator("Contains"));
    assert!(evaluate("Contains", &json!("a"), &json!("a")).is_err());
    assert_eq!(evaluate("eQuAlS", &json!("a"), &json!("a")), Ok(true));
}

#[test]
fn equals_table() {
    run(&[
        ("strings", "Equals", json!("string"), json!("string"), true),
        ("ints", "Equals", json!(1), json!(1), true),
        ("int and float", "Equal", json!(1), json!(1.0), true),
        ("bools", "Equals", json!(true), json!(true), true),
        (
            "bool vs string",
            "Equals",
            json!(true),
            json!("true"),
            false,
        ),
        (
            "quantity plain vs Ki",
            "Equals",
            json!("1024"),
            json!("1Ki"),
            true,
        ),
        (
            "quantity Gi vs Mi",
            "Equals",
            json!("1Gi"),
            json!("1024Mi"),
            true,
        ),
        (
            "quantity differs",
            "Equals",
            json!("1Gi"),
            json!("1G"),
            false,
        ),
        ("durations", "Equals", json!("1h"), json!("60m"), true),
        (
            "duration vs seconds",
            "Equals",
            json!("1m"),
            json!(60),
            true,
        ),
        (
            "duration differs",
            "Equals",
            json!("1h"),
            json!("61m"),
            false,
        ),
        (
            "value is a wildcard",
            "Equals",
            json!("nginx:1.2"),
            json!("nginx:*"),
            true,
        ),
        (
            "key is not a wildcard",
            "Equals",
            json!("nginx:*"),
            json!("nginx:1.2"),
            false,
        ),
        (
            "quantity key needs quantity value",
            "Equals",
            json!("2"),
            json!("*"),
            false,
        ),
        ("numeric string", "Equals", json!(2), json!("2"), true),
        (
            "maps deep equal",
            "Equals",
            json!({"a": [1, 2]}),
            json!({"a": [1.0, 2]}),
            true,
        ),
        (
            "maps differ",
            "Equals",
            json!({"a": 1}),
            json!({"a": 2}),
            false,
        ),
        (
            "arrays deep equal",
            "Equals",
            json!(["a", "b"]),
            json!(["a", "b"]),
            true,
        ),
        (
            "null key never equals",
            "Equals",
            Value::Null,
            Value::Null,
            false,
        ),
    ]);
}

#[test]
fn not_equals_table() {
    run(&[
        (
            "different strings",
            "NotEquals",
            json!("a"),
            json!("b"),
            true,
        ),
        ("same strings", "NotEquals", json!("a"), json!("a"), false),
        (
            "wildcard value matches",
            "NotEqual",
            json!("nginx:1"),
            json!("nginx:*"),
            false,
        ),
        ("string vs number", "NotEquals", json!("a"), json!(1), true),
        (
            "quantity vs non-quantity is neither",
            "NotEquals",
            json!("2"),
            json!("abc"),
            false,
        ),
        (
            "durations equal",
            "NotEquals",
            json!("1h"),
            json!("3600s"),
            false,
        ),
        ("numbers differ", "NotEquals", json!(1), json!(2), true),
        (
            "bool vs non-bool",
            "NotEquals",
            json!(true),
            json!("x"),
            true,
        ),
        (
            "maps equal",
            "NotEquals",
            json!({"a": 1}),
            json!({"a": 1}),
            false,
        ),
        ("null key", "NotEquals", Value::Null, json!("x"), false),
    ]);
}

#[test]
fn in_and_not_in_table() {
    run(&[
        ("string in list", "In", json!("a"), json!(["a", "b"]), true),
        (
            "string not in list",
            "In",
            json!("c"),
            json!(["a", "b"]),
            false,
        ),
        (
            "wildcard in list",
            "In",
            json!("kube-system"),
            json!(["kube-*"]),
            true,
        ),
        (
            "JSON array string",
            "In",
            json!("b"),
            json!("[\"a\",\"b\"]"),
            true,
        ),
        (
            "value string as wildcard",
            "In",
            json!("abc"),
            json!("a*"),
            true,
        ),
        (
            "list key subset",
            "In",
            json!(["a", "b"]),
            json!(["a", "b", "c"]),
            true,
        ),
        (
            "list key not subset",
            "In",
            json!(["a", "z"]),
            json!(["a", "b"]),
            false,
        ),
        (
            "NotIn string absent",
            "NotIn",
            json!("c"),
            json!(["a", "b"]),
            true,
        ),
        (
            "NotIn string present",
            "NotIn",
            json!("a"),
            json!(["a", "b"]),
            false,
        ),
        (
            "NotIn list partly absent",
            "NotIn",
            json!(["a", "z"]),
            json!(["a", "b"]),
            true,
        ),
        ("In bad value type", "In", json!("a"), json!(1), false),
    ]);
}

#[test]
fn any_in_table() {
    run(&[
        (
            "scalar in list",
            "AnyIn",
            json!("a"),
            json!(["a", "b"]),
            true,
        ),
        (
            "scalar not in list",
            "AnyIn",
            json!("c"),
            json!(["a", "b"]),
            false,
        ),
        (
            "wildcard in key",
            "AnyIn",
            json!("kube-*"),
            json!(["kube-system"]),
            true,
        ),
        (
            "list any overlaps",
            "AnyIn",
            json!(["x", "b"]),
            json!(["a", "b"]),
            true,
        ),
        (
            "list none overlaps",
            "AnyIn",
            json!(["x", "y"]),
            json!(["a", "b"]),
            false,
        ),
        (
            "number key stringified",
            "AnyIn",
            json!(8080),
            json!(["8080"]),
            true,
        ),
        (
            "number elements stringified",
            "AnyIn",
            json!([80]),
            json!([80, 443]),
            true,
        ),
        (
            "range contains",
            "AnyIn",
            json!([5, 50]),
            json!("1-10"),
            true,
        ),
        (
            "range contains none",
            "AnyIn",
            json!([50]),
            json!("1-10"),
            false,
        ),
        (
            "plain string value",
            "AnyIn",
            json!(["a"]),
            json!("a"),
            true,
        ),
        (
            "JSON string value",
            "AnyIn",
            json!(["b", "z"]),
            json!("[\"a\",\"b\"]"),
            true,
        ),
    ]);
}

#[test]
fn all_in_table() {
    run(&[
        (
            "all contained",
            "AllIn",
            json!(["a", "b"]),
            json!(["a", "b", "c"]),
            true,
        ),
        (
            "one missing",
            "AllIn",
            json!(["a", "z"]),
            json!(["a", "b"]),
            false,
        ),
        (
            "wildcards both ways",
            "AllIn",
            json!(["kube-system", "kube-*"]),
            json!(["kube-public", "kube-?ystem"]),
            true,
        ),
        (
            "range all inside",
            "AllIn",
            json!([1, 10]),
            json!("1-10"),
            true,
        ),
        (
            "range one outside",
            "AllIn",
            json!([1, 11]),
            json!("1-10"),
            false,
        ),
        ("scalar key", "AllIn", json!("a"), json!(["a"]), true),
    ]);
}

#[test]
fn any_not_in_table() {
    run(&[
        (
            "one outside",
            "AnyNotIn",
            json!(["a", "z"]),
            json!(["a", "b"]),
            true,
        ),
        (
            "all inside",
            "AnyNotIn",
            json!(["a", "b"]),
            json!(["a", "b"]),
            false,
        ),
        (
            "range one outside",
            "AnyNotIn",
            json!([5, 50]),
            json!("1-10"),
            true,
        ),
        (
            "range all inside",
            "AnyNotIn",
            json!([5, 6]),
            json!("1-10"),
            false,
        ),
        ("scalar absent", "AnyNotIn", json!("z"), json!(["a"]), true),
        (
            "scalar present",
            "AnyNotIn",
            json!("a"),
            json!(["a"]),
            false,
        ),
    ]);
}

#[test]
fn all_not_in_table() {
    // Expectations from Kyverno's allnotin_test.go.
    run(&[
        (
            "key string in value",
            "AllNotIn",
            json!("kyverno"),
            json!("kyverno"),
            false,
        ),
        (
            "key string matches wildcard",
            "AllNotIn",
            json!("kube-system"),
            json!(["default", "kube-*"]),
            false,
        ),
        (
            "key string not in value",
            "AllNotIn",
            json!("kyverno"),
            json!("default"),
            true,
        ),
        (
            "int key in value",
            "AllNotIn",
            json!(64),
            json!("64"),
            false,
        ),
        (
            "int key not in value",
            "AllNotIn",
            json!(64),
            json!("default"),
            true,
        ),
        (
            "array in value",
            "AllNotIn",
            json!(["kube-system", "kube-public"]),
            json!("kube-*"),
            false,
        ),
        (
            "array partially in value",
            "AllNotIn",
            json!(["kube-system", "default"]),
            json!("kube-system"),
            false,
        ),
        (
            "array not in value",
            "AllNotIn",
            json!(["default", "kyverno"]),
            json!("kube-*"),
            true,
        ),
        (
            "arrays disjoint",
            "AllNotIn",
            json!(["default", "kyverno"]),
            json!(["kube-*", "kube-system"]),
            true,
        ),
        (
            "arrays overlap",
            "AllNotIn",
            json!(["default", "kyverno"]),
            json!(["kube-*", "ky*"]),
            false,
        ),
        (
            "range none inside",
            "AllNotIn",
            json!([20, 30]),
            json!("1-10"),
            true,
        ),
        (
            "range one inside",
            "AllNotIn",
            json!([5, 30]),
            json!("1-10"),
            false,
        ),
    ]);
}

#[test]
fn numeric_table() {
    run(&[
        ("int greater", "GreaterThan", json!(10), json!(5), true),
        ("int not greater", "GreaterThan", json!(5), json!(10), false),
        (
            "equal is not greater",
            "GreaterThan",
            json!(5),
            json!(5),
            false,
        ),
        (
            "greater or equal",
            "GreaterThanOrEquals",
            json!(5),
            json!(5.0),
            true,
        ),
        ("less", "LessThan", json!(1.5), json!(2), true),
        (
            "less or equal fails",
            "LessThanOrEquals",
            json!(3),
            json!(2),
            false,
        ),
        (
            "numeric strings",
            "GreaterThan",
            json!("10"),
            json!("9"),
            true,
        ),
        (
            "number vs numeric string",
            "LessThan",
            json!(9),
            json!("10"),
            true,
        ),
        (
            "quantities",
            "GreaterThan",
            json!("1Gi"),
            json!("1000Mi"),
            true,
        ),
        (
            "quantities fail",
            "LessThan",
            json!("1Gi"),
            json!("1000Mi"),
            false,
        ),
        ("durations", "GreaterThan", json!("2h"), json!("90m"), true),
        (
            "duration vs seconds",
            "LessThan",
            json!("30s"),
            json!(60),
            true,
        ),
        (
            "seconds vs duration",
            "GreaterThanOrEquals",
            json!(3600),
            json!("1h"),
            true,
        ),
        (
            "semver",
            "GreaterThan",
            json!("1.10.0"),
            json!("1.9.3"),
            true,
        ),
        (
            "semver fails",
            "LessThan",
            json!("1.10.0"),
            json!("1.9.3"),
            false,
        ),
        (
            "semver needs semver value",
            "GreaterThan",
            json!("1.10.0"),
            json!("abc"),
            false,
        ),
        (
            "plain strings are not ordered",
            "GreaterThan",
            json!("b"),
            json!("a"),
            false,
        ),
        (
            "bool key unsupported",
            "GreaterThan",
            json!(true),
            json!(false),
            false,
        ),
    ]);
}

#[test]
fn duration_operators_table() {
    run(&[
        (
            "greater",
            "DurationGreaterThan",
            json!("2h"),
            json!("1h"),
            true,
        ),
        (
            "greater fails",
            "DurationGreaterThan",
            json!("1h"),
            json!("2h"),
            false,
        ),
        (
            "or equals",
            "DurationGreaterThanOrEquals",
            json!("1h"),
            json!("60m"),
            true,
        ),
        (
            "less with seconds",
            "DurationLessThan",
            json!(30),
            json!("1m"),
            true,
        ),
        (
            "less or equal fails",
            "DurationLessThanOrEquals",
            json!("2m"),
            json!(60),
            false,
        ),
        (
            "non-duration key",
            "DurationLessThan",
            json!("abc"),
            json!("1m"),
            false,
        ),
    ]);
}
