use super::match_constraints::{kind_for_resource, resource_for_kind};
use super::validating_policy::{Binding, CelPolicyResult, ValidatingPolicy};
use super::*;
use crate::context::{ApiCall, ImageData, Labels, NoProvider, ProviderError};
use crate::request::{AdmissionRequest, Operation};
use serde_json::json;

fn eval_json(expr: &str, object: Value) -> Result<Value, String> {
    let mut scope = Scope::default();
    scope.set_json("object", &object);
    Expression::compile(expr, "x")
        .map_err(|e| e.to_string())?
        .eval(&scope)
        .map(|v| value::to_json(&v))
}

#[test]
fn library_functions() {
    let obj = json!({"spec": {"replicas": 3, "containers": [{"image": "nginx:1.2"}]},
                     "metadata": {"labels": {"app": "x"}}});
    let cases: &[(&str, Value)] = &[
        ("object.spec.replicas <= 3", json!(true)),
        ("object.spec.?missing.orValue(7)", json!(7)),
        ("object.spec.replicas.orValue(7)", json!(3)),
        ("object.?spec.?replicas.orValue(7)", json!(3)),
        (
            "object.spec.?securityContext.privileged.orValue(true)",
            json!(true),
        ),
        ("object.?metadata.labels.app.orValue('none')", json!("x")),
        (
            "object.?metadata.labels.nope.orValue('none')",
            json!("none"),
        ),
        (
            "has(object.metadata.labels) && 'app' in object.metadata.labels",
            json!(true),
        ),
        (
            "object.spec.containers.all(c, c.image.startsWith('nginx'))",
            json!(true),
        ),
        ("'a,b'.split(',')", json!(["a", "b"])),
        ("'HeLLo'.lowerAscii()", json!("hello")),
        ("sets.contains([1, 2, 3], [1, 2])", json!(true)),
        (
            "quantity('1Gi').isGreaterThan(quantity('1Mi'))",
            json!(true),
        ),
        ("isCIDR('10.0.0.0/8')", json!(true)),
        ("url('https://a.b/c').getHost()", json!("a.b")),
        (
            "parseServiceAccount('system:serviceaccount:ns:sa').Name",
            json!("sa"),
        ),
        (
            "user.parseServiceAccount('system:serviceaccount:ns:sa').Namespace",
            json!("ns"),
        ),
        ("json.unmarshal('{\"a\": [1]}').a[0]", json!(1)),
        ("json.marshal({'a': 1})", json!("{\"a\":1}")),
        ("yaml.parse('a: b').a", json!("b")),
        ("image('ghcr.io/x/y:1.0').registry()", json!("ghcr.io")),
        (
            "image('nginx').repository()",
            json!("library/nginx").clone(),
        ),
        ("image('nginx@sha256:abc').containsDigest()", json!(true)),
        ("isImage('not an image')", json!(false)),
    ];
    for (expr, want) in cases {
        let got = eval_json(expr, obj.clone());
        // Image repository follows the engine's image parser (no `library/` prefix).
        if *expr == "image('nginx').repository()" {
            assert_eq!(got, Ok(json!("nginx")), "{expr}");
            continue;
        }
        assert_eq!(got.as_ref(), Ok(want), "{expr}");
    }
}

#[test]
fn compile_errors_name_the_field() {
    let err = Expression::compile("object.spec.(", "spec.validations[0].expression").unwrap_err();
    assert_eq!(err.path, "spec.validations[0].expression");
    assert!(Expression::compile("  ", "p").is_err());
}

#[test]
fn runtime_errors_are_errors() {
    assert!(eval_json("object.spec.nope > 1", json!({"spec": {}})).is_err());
    assert!(eval_json("1 / 0", json!({})).is_err());
}

#[test]
fn kinds_and_resources() {
    for (group, kind, resource) in [
        ("apps", "Deployment", "deployments"),
        ("networking.k8s.io", "Ingress", "ingresses"),
        ("", "Pod", "pods"),
        ("example.com", "Policy", "policies"),
        ("example.com", "Widget", "widgets"),
    ] {
        assert_eq!(resource_for_kind(group, kind), resource);
        assert_eq!(kind_for_resource(group, resource), kind);
    }
}

fn request(op: Operation, object: Value) -> AdmissionRequest {
    AdmissionRequest {
        operation: op,
        object: object.into(),
        ..AdmissionRequest::default()
    }
}

fn cel_input<'a>(object: &'a Value, request: &'a Value) -> CelInput<'a> {
    CelInput {
        object,
        old_object: &Value::Null,
        request,
        namespace_object: None,
        params: None,
        provider: None,
    }
}

#[test]
fn validate_cel_outcomes() {
    let rule = json!({
        "variables": [{"name": "r", "expression": "object.spec.replicas"}],
        "expressions": [
            {"expression": "variables.r <= 3", "message": "too many"},
            {"expression": "variables.r > 0", "messageExpression": "'got ' + string(variables.r)"},
            {"expression": "object.spec.x == 1"},
        ]
    });
    let pre = json!([{"name": "only-create", "expression": "request.operation == 'CREATE'"}]);
    let v = ValidateCel::compile(&rule, Some(&pre), "spec.rules[0].validate.cel").unwrap();
    let create = json!({"operation": "CREATE"});
    let cases = [
        (
            json!({"spec": {"replicas": 2, "x": 1}}),
            &create,
            CelOutcome::Pass,
        ),
        (
            json!({"spec": {"replicas": 5, "x": 1}}),
            &create,
            CelOutcome::Fail("too many".into()),
        ),
        (
            json!({"spec": {"replicas": 0, "x": 1}}),
            &create,
            CelOutcome::Fail("got 0".into()),
        ),
        (
            json!({"spec": {"replicas": 1, "x": 2}}),
            &create,
            CelOutcome::Fail("failed expression: object.spec.x == 1".into()),
        ),
    ];
    for (obj, req, want) in cases {
        assert_eq!(v.evaluate(&cel_input(&obj, req)), want, "{obj}");
    }
    let update = json!({"operation": "UPDATE"});
    let obj = json!({"spec": {"replicas": 9}});
    assert!(matches!(
        v.evaluate(&cel_input(&obj, &update)),
        CelOutcome::Skip(_)
    ));
    // A validation that cannot be evaluated fails the rule, as a ValidatingAdmissionPolicy
    // under failurePolicy Fail denies.
    let obj = json!({"spec": {}});
    assert!(matches!(
        v.evaluate(&cel_input(&obj, &create)),
        CelOutcome::Fail(m) if m.contains("replicas")
    ));
    // An expression that does not compile fails the rule when it runs (Kyverno compiles
    // validate.cel then); a missing expression still refuses the policy, with its path.
    let bad = json!({"expressions": [{"expression": "a ||| b"}]});
    let v = ValidateCel::compile(&bad, None, "spec.rules[0].validate.cel").unwrap();
    assert!(matches!(
        v.evaluate(&cel_input(&obj, &create)),
        CelOutcome::Fail(m) if m.starts_with("compilation error: ")
    ));
    let bad = json!({"expressions": [{"message": "m"}]});
    let err = ValidateCel::compile(&bad, None, "spec.rules[0].validate.cel").unwrap_err();
    assert_eq!(
        err.path,
        "spec.rules[0].validate.cel.expressions[0].expression"
    );
}

fn vpol(spec: Value) -> ValidatingPolicy {
    ValidatingPolicy::compile(&json!({
        "apiVersion": "policies.kyverno.io/v1",
        "kind": "ValidatingPolicy",
        "metadata": {"name": "p"},
        "spec": spec,
    }))
    .unwrap()
}

fn deployment(replicas: i64, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "d", "namespace": "default", "labels": labels},
           "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

#[test]
fn validating_policy_results() {
    let p = vpol(json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
        "matchConditions": [{"name": "labelled", "expression": "has(object.metadata.labels.app)"}],
        "variables": [{"name": "max", "expression": "3"}],
        "validations": [{"expression": "object.spec.replicas <= variables.max", "message": "max 3"}],
    }));
    assert!(p.match_constraints.is_simple());
    let cases = [
        (
            Operation::Create,
            deployment(2, json!({"app": "a"})),
            CelPolicyResult::Pass,
        ),
        (
            Operation::Create,
            deployment(4, json!({"app": "a"})),
            CelPolicyResult::Fail("max 3".into()),
        ),
        (
            Operation::Delete,
            deployment(4, json!({"app": "a"})),
            CelPolicyResult::NotMatched,
        ),
        (
            Operation::Create,
            deployment(4, json!({})),
            CelPolicyResult::Skip("match condition \"labelled\" not met".into()),
        ),
        (
            Operation::Create,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
            CelPolicyResult::NotMatched,
        ),
    ];
    for (op, obj, want) in cases {
        let req = if op == Operation::Delete {
            AdmissionRequest {
                operation: op,
                old_object: obj.into(),
                ..AdmissionRequest::default()
            }
        } else {
            request(op, obj)
        };
        assert_eq!(p.evaluate(&req, &NoProvider), want);
    }
}

#[test]
fn pod_policies_cover_pod_controllers() {
    let p = vpol(json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["pods"]}]},
        "validations": [{"expression": "object.spec.containers.all(c, c.image != 'nginx')"}],
    }));
    let d = deployment(1, json!({}));
    assert!(matches!(
        p.evaluate(&request(Operation::Create, d), &NoProvider),
        CelPolicyResult::Fail(_)
    ));
    // The objects become the template; `request` stays the controller's request.
    let seen = vpol(json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["pods"]}]},
        "validations": [{"expression":
            "request.kind.kind == 'Deployment' && request.resource.resource == 'deployments' \
             && request.name == 'd' && object.kind == 'Pod'"}],
    }));
    assert_eq!(
        seen.evaluate(
            &request(Operation::Create, deployment(1, json!({}))),
            &NoProvider
        ),
        CelPolicyResult::Pass
    );
    let off = vpol(json!({
        "autogen": {"podControllers": {"controllers": []}},
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["pods"]}]},
        "validations": [{"expression": "false"}],
    }));
    assert_eq!(
        off.evaluate(
            &request(Operation::Create, deployment(1, json!({}))),
            &NoProvider
        ),
        CelPolicyResult::NotMatched
    );
}

/// Serves one ConfigMap.
struct Params;

impl crate::context::ContextProvider for Params {
    fn resource(
        &self,
        _: &str,
        kind: &str,
        _: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        Ok((kind == "ConfigMap" && name == "limits").then(
            || json!({"kind": "ConfigMap", "metadata": {"name": "limits"}, "data": {"max": "2"}}),
        ))
    }
    fn list(&self, _: &str, kind: &str, _: &str) -> Result<Vec<Value>, ProviderError> {
        Ok(if kind == "ConfigMap" {
            vec![json!({"metadata": {"name": "limits"}, "data": {"max": "2"}})]
        } else {
            Vec::new()
        })
    }
    fn config_map(&self, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
        Ok(None)
    }
    fn api_call(&self, call: &ApiCall) -> Result<Value, ProviderError> {
        // Echoes what it was asked, as an object or, for `/list`, inside a list.
        let echo = json!({"method": call.method, "body": call.body, "http": call.cel_http});
        Ok(if call.url.ends_with("/list") {
            json!([echo])
        } else {
            echo
        })
    }
    fn namespace_labels(&self, _: &str) -> Result<Option<Labels>, ProviderError> {
        Ok(None)
    }
    fn image_data(&self, _: &str) -> Result<ImageData, ProviderError> {
        Ok(ImageData::default())
    }
    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        Ok((name == "teams").then(|| json!({"names": ["a", "b"]})))
    }
}

#[test]
fn http_and_global_context_go_through_the_provider() {
    let scope = Scope::with_provider(Some(&Params));
    let eval = |expr: &str| {
        Expression::compile(expr, "x")
            .unwrap()
            .eval(&scope)
            .map(|v| value::to_json(&v))
    };
    assert_eq!(
        eval("http.Get('https://svc.example/x')"),
        Ok(json!({"method": "GET", "body": null, "http": true, "statusCode": 200}))
    );
    assert_eq!(
        eval("http.Post('https://svc.example/x', {'a': 1}).body.a"),
        Ok(json!(1))
    );
    assert_eq!(
        eval("http.Get('https://svc.example/list')"),
        Ok(json!({"body": [{"method": "GET", "body": null, "http": true}], "statusCode": 200}))
    );
    assert_eq!(
        eval("globalContext.Get('teams', 'names')"),
        Ok(json!(["a", "b"]))
    );
    assert_eq!(eval("size(globalContext.Get('teams', ''))"), Ok(json!(1)));
    assert!(eval("globalContext.Get('nope', '')").is_err());
    assert!(eval("globalContext.Get('teams', 'nope')").is_err());
}

#[test]
fn admission_policy_with_binding_and_params() {
    let mut p = ValidatingPolicy::compile(&json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "vap"},
        "spec": {
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["deployments"]}]},
            "validations": [{"expression": "object.spec.replicas <= int(params.data.max)"}],
        }
    }))
    .unwrap();
    let binding = Binding::compile(&json!({
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "b"},
        "spec": {"policyName": "vap", "paramRef": {"name": "limits"},
                 "matchResources": {"objectSelector": {"matchLabels": {"app": "nginx"}}}}
    }))
    .unwrap();
    p.bind(&[binding]);
    let cases = [
        (
            deployment(2, json!({"app": "nginx"})),
            CelPolicyResult::Pass,
        ),
        (
            deployment(3, json!({"app": "nginx"})),
            CelPolicyResult::Fail(
                "failed expression: object.spec.replicas <= int(params.data.max)".into(),
            ),
        ),
        (
            deployment(3, json!({"app": "other"})),
            CelPolicyResult::NotMatched,
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(p.evaluate(&request(Operation::Create, obj), &Params), want);
    }
}

#[test]
fn resource_lookups_go_through_the_provider() {
    let mut scope = Scope::with_provider(Some(&Params));
    scope.set_json("object", &json!({}));
    let e = Expression::compile(
        "resource.Get('v1', 'configmaps', 'default', 'limits').data.max",
        "x",
    )
    .unwrap();
    assert_eq!(e.eval(&scope).map(|v| value::to_json(&v)), Ok(json!("2")));
    let e = Expression::compile(
        "size(resource.List('v1', 'configmaps', 'default').items)",
        "x",
    )
    .unwrap();
    assert_eq!(e.eval(&scope).map(|v| value::to_json(&v)), Ok(json!(1)));
    let e =
        Expression::compile("resource.Get('v1', 'configmaps', 'default', 'nope')", "x").unwrap();
    assert!(e.eval(&scope).is_err());
}

#[test]
fn variables_errors_surface_only_when_read() {
    let p = vpol(json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["deployments"]}]},
        "variables": [{"name": "bad", "expression": "object.nope.x"}],
        "validations": [{"expression": "true"}],
    }));
    assert_eq!(
        p.evaluate(
            &request(Operation::Create, deployment(1, json!({}))),
            &NoProvider
        ),
        CelPolicyResult::Pass
    );
}

#[test]
fn oversized_input_is_an_error() {
    assert!(json_size_within(&json!([1, 2, 3]), 4));
    assert!(!json_size_within(&json!([1, 2, 3]), 3));
}

#[test]
fn cel_go_functions_the_interpreter_lacks() {
    let obj = json!({"spec": {"replicas": 3, "priorities": [{"spot": true}, {}]}});
    let cases: &[(&str, Value)] = &[
        ("cel.bind(r, object.spec.replicas, r * r + r)", json!(12)),
        (
            "cel.bind(p, object.spec.priorities, p.exists(x, x.?spot.orValue(false)))",
            json!(true),
        ),
        (
            "type(object.spec) == map && type(null) == null_type",
            json!(true),
        ),
        (
            "type(object.spec.replicas) == int && type('a') != type(1)",
            json!(true),
        ),
        ("string(true) + '/' + string(false)", json!("true/false")),
        ("string(3)", json!("3")),
        (
            "time.now() > timestamp('2020-01-01T00:00:00Z')",
            json!(true),
        ),
        ("time.now() - duration('1h') < time.now()", json!(true)),
    ];
    for (expr, want) in cases {
        assert_eq!(eval_json(expr, obj.clone()).as_ref(), Ok(want), "{expr}");
    }
}

#[test]
fn regex_library() {
    let obj = json!({});
    let cases: &[(&str, Value)] = &[
        (
            r"regex.replace('docker.io/nginx:1', '^docker\\.io/(.*)', 'my.io/\\1')",
            json!("my.io/nginx:1"),
        ),
        (r"regex.replace('a-b-c', '-', '$', 1)", json!("a$b-c")),
        (r"regex.replace('a-b-c', '-', '+', -1)", json!("a+b+c")),
        (
            r"regex.extract('v1.2.3', 'v([0-9]+)').orValue('')",
            json!("1"),
        ),
        (r"regex.extract('abc', '[0-9]+').hasValue()", json!(false)),
        (
            r"regex.extractAll('a1b22c333', '[0-9]+')",
            json!(["1", "22", "333"]),
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(eval_json(expr, obj.clone()).as_ref(), Ok(want), "{expr}");
    }
    assert!(eval_json("regex.replace('a', '(', 'b')", obj).is_err());
}

#[test]
fn hash_and_gzip_libraries() {
    let cases: &[(&str, Value)] = &[
        ("md5('kybern')", json!("909bfba1d56222f166bc9e63007e3ddf")),
        (
            "hash.md5('kybern')",
            json!("909bfba1d56222f166bc9e63007e3ddf"),
        ),
        (
            "sha1('kybern')",
            json!("61dbea6110128af174261b3a776da3017567b959"),
        ),
        (
            "hash.sha1('kybern')",
            json!("61dbea6110128af174261b3a776da3017567b959"),
        ),
        (
            "sha256('kybern')",
            json!("7158c8a000f57546a082b4bd444f0f252a1733a4adde25327b9eecad6bca1882"),
        ),
        (
            "hash.sha256('kybern')",
            json!("7158c8a000f57546a082b4bd444f0f252a1733a4adde25327b9eecad6bca1882"),
        ),
        (
            "gzip.decompress(base64.decode('H4sIAAAAAAACA8tIzcnJV8iuTEotygMAaeczPQwAAAA='))",
            json!("hello kybern"),
        ),
        // Concatenated members read as one stream, as Go's gzip reader does.
        (
            "gzip.decompress(base64.decode('H4sIAAAAAAACA8vPS1UAAElhrCMEAAAAH4sIAAAAAAACAyspzwcAZorKEQMAAAA='))",
            json!("one two"),
        ),
        (
            "gzip.decompress(gzip.compress('round trip'))",
            json!("round trip"),
        ),
        (
            "resource.ToGVR('apps/v1', 'Deployment')",
            json!({"Group": "apps", "Version": "v1", "Resource": "deployments"}),
        ),
        (
            "resource.toGVR('v1', 'ConfigMap').Resource",
            json!("configmaps"),
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(eval_json(expr, json!({})).as_ref(), Ok(want), "{expr}");
    }
    assert!(eval_json("gzip.decompress(b'not gzip')", json!({})).is_err());
}

#[test]
fn resource_lookups_take_a_gvr() {
    let mut scope = Scope::with_provider(Some(&Params));
    scope.set_json("object", &json!({}));
    for expr in [
        "resource.get(resource.ToGVR('v1', 'ConfigMap'), 'default', 'limits').data.max",
        "resource.List(resource.toGVR('v1', 'ConfigMap'), 'default').items[0].data.max",
    ] {
        let e = Expression::compile(expr, "x").unwrap();
        assert_eq!(
            e.eval(&scope).map(|v| value::to_json(&v)),
            Ok(json!("2")),
            "{expr}"
        );
    }
}

#[test]
fn unbalanced_brackets_are_compile_errors_before_the_parser_sees_them() {
    // Found by fuzzing: the parser's own counter overflowed on this input.
    let fuzzed = include_str!("testdata/unbalanced-braces.cel");
    let err = Expression::compile(fuzzed, "x").unwrap_err();
    assert!(
        err.message.contains("compilation failed"),
        "{}",
        err.message
    );
    for bad in ["(a", "a)", "[1, 2", "{'a': 1", "a.b(]", "'open"] {
        assert!(Expression::compile(bad, "x").is_err(), "{bad}");
    }
    for good in [
        r#"'(' + ")" == '()'"#,
        r#"r'[' + '''}{''' + "\"(" == "x""#,
        "size([1, (2)]) == 2 // a comment with ( [ {",
        "{'a': [1]}.a[0] == 1",
    ] {
        assert!(Expression::compile(good, "x").is_ok(), "{good}");
    }
}

#[test]
fn planned_evaluation_stops_at_its_step_budget_with_an_error() {
    let containers: Vec<Value> = (0..200).map(|i| json!({"name": format!("c{i}")})).collect();
    let object = json!({"spec": {"containers": containers}});
    // 200^3 = 8,000,000 iterations: over the budget, an error and not a long evaluation.
    let e = Expression::compile(
        "object.spec.containers.all(a, object.spec.containers.all(b, object.spec.containers.all(c, c.name != '')))",
        "x",
    )
    .unwrap();
    assert!(e.fallback_reason().is_none(), "the expression is planned");
    let mut scope = Scope::default();
    scope.set_json("object", &object);
    let started = std::time::Instant::now();
    let err = e.eval(&scope).unwrap_err();
    assert!(err.contains("exceeded its evaluation budget"), "{err}");
    eprintln!("stopped after {:?}", started.elapsed());
    // Strings grown in a loop count by their size.
    let e = Expression::compile(
        "object.spec.containers.map(a, object.spec.containers.map(b, 'x')).all(l, l.all(s, size(s + s + s + s) > 0))",
        "x",
    )
    .unwrap();
    assert!(e.eval(&scope).is_ok(), "40,000 steps fit the budget");
    // Under the budget the answer is the planner's, equal to the interpreter's.
    let e = Expression::compile(
        "object.spec.containers.all(a, object.spec.containers.all(b, b.name != ''))",
        "x",
    )
    .unwrap();
    assert_eq!(e.eval(&scope).unwrap(), e.interpret(&scope).unwrap());
}

#[test]
fn interpreted_nested_loops_over_large_inputs_are_refused_not_run() {
    // Three nested comprehensions: planned, the step budget stops them; in the interpreter the
    // static bound (inputs^depth) refuses them before they start.
    let src = "object.items.all(a, object.items.all(b, object.items.all(c, a + b + c >= 0)))";
    let mut e = Expression::compile(src, "x").unwrap();
    e.interpreter_only();
    let small = json!({"items": [1, 2, 3]});
    let mut scope = Scope::default();
    scope.set_json("object", &small);
    assert_eq!(e.eval(&scope).map(|v| value::to_json(&v)), Ok(json!(true)));
    let large = json!({"items": (0..2000).collect::<Vec<i64>>()});
    let mut scope = Scope::default();
    scope.set_json("object", &large);
    let started = std::time::Instant::now();
    let err = e.eval(&scope).unwrap_err();
    assert!(
        err.contains("nest 3 deep over inputs of") && err.contains("over the bound of"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // `lists.range` makes lists from a number: nested over it, refused whatever the inputs.
    let mut ranged = Expression::compile(
        "lists.range(5000).all(i, lists.range(5000).all(j, i + j >= 0))",
        "x",
    )
    .unwrap();
    ranged.interpreter_only();
    let err = ranged.eval(&Scope::default()).unwrap_err();
    assert!(err.contains("a lists.range list"), "{err}");
    // One loop is linear in its input: always run.
    let mut one = Expression::compile("object.items.all(a, a >= 0)", "x").unwrap();
    one.interpreter_only();
    assert_eq!(
        one.eval(&scope).map(|v| value::to_json(&v)),
        Ok(json!(true))
    );
}
