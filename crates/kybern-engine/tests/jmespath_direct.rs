//! Differential check of JMESPath evaluated straight over the request's JSON against the
//! interpreter: every JMESPath expression of the conformance corpus's policies (`{{ }}`
//! variables anywhere, foreach `list`, context `jmesPath`) that is planned for the direct path
//! is evaluated both ways over the resources of its suite and generated variations of them
//! (fields removed, set to null, to a wrong type, emptied), as `request.object` and as
//! `request.oldObject`, with a container of the resource as the foreach `element`. Results and errors must be the same. A fixed list of expressions covers
//! shapes the corpus uses rarely (slices, negative indexes, number and list comparisons,
//! functions with expression references).
//!
//! The corpus is `$KYBERN_CONFORMANCE_DIR` (default `../shared/conformance` beside the
//! repository); without it the corpus part is skipped with a message (and fails under `CI`).

mod support;

use kybern_engine::jmespath::{Expression, compile};
use kybern_engine::json_context::JsonContext;
use serde_json::{Value, json};
use support::corpus::{self, variations};

/// JMESPath sources under `v`: the inside of every `{{ }}` in a string, and the values of
/// `list` and `jmesPath` keys.
fn sources(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let (Value::String(s), "list" | "jmesPath") = (x, k.as_str()) {
                    out.push(s.trim().to_string());
                }
                sources(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| sources(x, out)),
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let after = rest.get(start + 2..).unwrap_or_default();
                let Some(end) = after.find("}}") else { break };
                let inner = after.get(..end).unwrap_or_default().trim();
                // Kyverno's `{{- }}` trims, and `@` / `$` are special forms it handles itself.
                let inner = inner.trim_start_matches('-').trim();
                if !inner.is_empty() {
                    out.push(inner.to_string());
                }
                rest = after.get(end + 2..).unwrap_or_default();
            }
        }
        _ => {}
    }
}

#[derive(Default)]
struct Tally {
    expressions: usize,
    direct: usize,
    evaluations: usize,
    mismatches: Vec<String>,
}

/// Both ways over one pair of objects and a foreach element; a mismatch is recorded.
fn check(tally: &mut Tally, e: &Expression, object: &Value, old_object: &Value, element: &Value) {
    let request = json!({"operation": "UPDATE", "namespace": "prod",
        "userInfo": {"username": "alice", "groups": ["dev", "system:authenticated"]},
        "dryRun": false});
    let mut context = json!({"request": request.clone(), "element": element, "element0": element});
    context["request"]["object"] = object.clone();
    context["request"]["oldObject"] = old_object.clone();
    let reference = e.search(&context);
    // The engine's context: the request's fields as interpreter values, read by their chains.
    let in_context = JsonContext::new(&context).search(e);
    if format!("{in_context:?}") != format!("{reference:?}") && tally.mismatches.len() < 40 {
        tally.mismatches.push(format!(
            "{:?}\n  context: {in_context:?}\n  interpreter: {reference:?}",
            e.as_str()
        ));
    }
    let tops = [
        ("element", element),
        ("element0", element),
        ("request", &request),
    ];
    let Some(direct) = e.search_json(object, old_object, &tops) else {
        return;
    };
    tally.evaluations += 1;
    // `time_now*` and `random` differ between two evaluations.
    let clock = ["time_now", "random"]
        .iter()
        .any(|f| e.as_str().contains(f));
    if format!("{direct:?}") != format!("{reference:?}") && !clock && tally.mismatches.len() < 40 {
        tally.mismatches.push(format!(
            "{:?}\n  direct: {direct:?}\n  interpreter: {reference:?}\n  object: {}\n  oldObject: {}",
            e.as_str(),
            serde_json::to_string(object).unwrap_or_default(),
            serde_json::to_string(old_object).unwrap_or_default(),
        ));
    }
}

/// A foreach element of `object`: its first container (of a Pod or a pod template), else the
/// object itself.
fn element_of(object: &Value) -> &Value {
    ["/spec/containers/0", "/spec/template/spec/containers/0"]
        .iter()
        .find_map(|p| object.pointer(p))
        .unwrap_or(object)
}

fn run(tally: &mut Tally, exprs: &[Expression], resources: &[Value]) {
    for resource in resources {
        for object in variations(resource, 25) {
            for e in exprs {
                check(tally, e, &object, resource, element_of(&object));
                check(tally, e, &Value::Null, &object, element_of(resource));
            }
        }
    }
}

fn report(tally: &Tally) {
    assert!(
        tally.mismatches.is_empty(),
        "{} direct results differ from the interpreter's:\n{}",
        tally.mismatches.len(),
        tally.mismatches.join("\n")
    );
}

#[test]
fn direct_evaluation_agrees_with_the_interpreter_on_tricky_shapes() {
    let exprs = [
        "request.object.spec.containers[-1].name",
        "request.object.spec.containers[5].name",
        "request.object.spec.containers[::-1].name",
        "request.object.spec.containers[1:].name",
        "request.object.spec.containers[:-1:2]",
        "request.object.spec.containers[?name == 'b'].image | [0]",
        "request.object.spec.containers[?ports].ports[].containerPort",
        "request.object.spec.containers[].ports[?containerPort > `80`][]",
        "request.object.spec.containers[].ports[].containerPort | max(@)",
        "request.object.spec.replicas > `2`",
        "request.object.spec.replicas == `3.0`",
        "request.object.spec.replicas < request.oldObject.spec.replicas",
        "request.object.spec.replicas >= 'x'",
        "request.object.spec.ratio == `0.5`",
        "request.object.spec.ratio",
        "request.object.spec.whole",
        "request.object.spec.containers == request.oldObject.spec.containers",
        "request.object.metadata.labels == request.oldObject.metadata.labels",
        "request.object.metadata.labels != `{}`",
        "request.object.metadata.labels.*",
        "request.object.metadata.labels.* | sort(@)",
        "request.object.metadata.{n: name, l: labels.app, x: missing}",
        "request.object.metadata.[name, namespace, missing]",
        "request.object.spec.containers[].[name, image]",
        "request.object.spec.containers[*].name",
        "request.object.spec.[containers, initContainers][][].name",
        "request.object.spec.missing.[a, b]",
        "request.object.spec.missing.{a: a}",
        "!(request.object.spec.containers)",
        "request.object.spec.containers && request.object.metadata.name",
        "request.object.spec.initContainers || request.oldObject.spec.initContainers || `[]`",
        "request.object.spec.containers[].name | join(',', @)",
        "sort_by(request.object.spec.containers, &name)[].name",
        "max_by(request.object.spec.containers, &to_number(resources.cpu || `0`)).name",
        "map(&name, request.object.spec.containers)",
        "length(request.object.spec.containers)",
        "length(request.object.spec.missing)",
        "keys(request.object.metadata)",
        "request.object.metadata.keys(@)",
        "request.object.metadata.missing.keys(@)",
        "keys(request.object.spec.containers)",
        "request.object.spec.containers[].keys(@)",
        "request.object.spec.containers[].keys(@)[]",
        "length(request.object.metadata.name)",
        "length(request.object.metadata.labels.note)",
        "length(request.object.metadata.labels)",
        "length(request.object.spec.containers[].name)",
        "length(request.object.spec.replicas)",
        "values(request.object.spec.replicas)",
        "to_string(request.object.spec.replicas)",
        "contains(request.object.metadata.labels.app, 'we')",
        "starts_with(request.object.metadata.name, `5`)",
        "request.object.metadata.labels.\"app.kubernetes.io/name\"",
        "request.object.metadata.name",
        "request.object.metadata.nope",
        "request.object.metadata.nope.deeper",
        "request.object.spec.containers[0].nope",
        "request.object.spec.containers[0].name.nope",
        "request.oldObject.metadata.name",
        "request.object",
        "request.oldObject",
        "request.object.spec.containers[0]",
        "`{\"a\": 1.0}`.a == request.object.spec.whole",
        "[request.object.spec.whole, `2.0`]",
        "request.object.spec.containers[?image == null].name",
        "split(request.object.metadata.name, '-')",
        "regex_match('^we', request.object.metadata.labels.app)",
        "request.object.spec.containers[].resources.limits.memory | [0] | divide(@, '2')",
        "add(request.object.spec.replicas, `1`)",
        "request.object.spec.containers[].name | length(@) > `1`",
        "not_null(request.object.spec.missing, request.object.metadata.name)",
        "element.securityContext.capabilities.drop[] || `[]`",
        "element.name == request.object.spec.containers[0].name",
        "element0.ports[].containerPort",
        "element",
        "element.missing",
        "request.operation || 'BACKGROUND'",
        "request.operation == 'UPDATE' && request.object.metadata.name",
        "request.userInfo.groups[?@ == 'dev'] | length(@)",
        "request.missing.deeper || request.namespace",
        "contains(request.userInfo.groups, 'system:authenticated')",
    ];
    let exprs: Vec<Expression> = exprs
        .iter()
        .map(|s| compile(s).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect();
    for e in &exprs {
        assert!(e.is_direct(), "{} is not planned", e.as_str());
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "prod",
            "labels": {"app": "web", "app.kubernetes.io/name": "web", "tier": "front", "note": "héllo wörld"}},
        "spec": {
            "replicas": 3, "ratio": 0.5, "whole": 1.0,
            "containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 8080}],
                 "resources": {"cpu": "2", "limits": {"memory": "64Mi"}}},
                {"name": "b", "image": null, "resources": {"cpu": "1"}},
                {"name": "c", "image": "busybox", "ports": []}
            ],
            "initContainers": [{"name": "init", "image": "alpine"}]
        }
    });
    let mut tally = Tally::default();
    run(&mut tally, &exprs, &[pod]);
    assert!(tally.evaluations > 1000, "{}", tally.evaluations);
    report(&tally);
}

#[test]
fn direct_evaluation_agrees_with_the_interpreter_on_the_corpus() {
    let Some(by_dir) = corpus::suites_or_skip("the JMESPath differential check", |d| {
        let mut s = Vec::new();
        sources(d, &mut s);
        !s.is_empty()
    }) else {
        return;
    };
    let mut tally = Tally::default();
    let mut seen = std::collections::BTreeSet::new();
    for (policies, resources) in by_dir.values() {
        let mut texts = Vec::new();
        for p in policies {
            sources(p, &mut texts);
        }
        let mut exprs = Vec::new();
        for t in texts {
            let Ok(e) = compile(&t) else { continue };
            if seen.insert(t) {
                tally.expressions += 1;
                if e.is_direct() {
                    tally.direct += 1;
                }
            }
            if e.is_direct() {
                exprs.push(e);
            }
        }
        run(&mut tally, &exprs, resources);
    }
    eprintln!(
        "JMESPath over the request's JSON: {}/{} distinct corpus expressions planned; {} evaluations compared",
        tally.direct, tally.expressions, tally.evaluations
    );
    assert!(
        tally.direct > 50,
        "only {} expressions planned",
        tally.direct
    );
    report(&tally);
}
