//! The fields a `kyverno.io` ClusterPolicy/Policy may hold, from Kyverno's CRD schema (the Go
//! types of `api/kyverno/v1`, every field of current and earlier releases): a field the schema
//! does not declare, such as a misspelt `messages:`, makes Kyverno refuse the policy, so it is a
//! load error naming its path. Fields the schema leaves open (patterns, patches, conditions,
//! variable values, generated data, metadata) and the parts kybern does not model field by field
//! (`verifyImages`, `imageExtractors`, `validate.manifests`, `webhookConfiguration`) accept
//! anything.

use serde_json::Value;

/// What a field may hold.
enum Shape {
    /// Anything (schemaless in Kyverno's CRD, or not checked here).
    Open,
    /// An object with exactly these fields (any value that is not an object is left to the
    /// typed decoding).
    Fields(&'static [(&'static str, &'static Shape)]),
    /// A list of values of one shape.
    ListOf(&'static Shape),
}

use Shape::{Fields, ListOf, Open};

static OPEN: Shape = Open;

static SELECTOR: Shape = Fields(&[
    ("matchLabels", &OPEN),
    ("matchExpressions", &ListOf(&SELECTOR_REQUIREMENT)),
]);
static SELECTOR_REQUIREMENT: Shape =
    Fields(&[("key", &OPEN), ("operator", &OPEN), ("values", &OPEN)]);

static FAILURE_ACTION_OVERRIDE: Shape = Fields(&[
    ("action", &OPEN),
    ("namespaces", &OPEN),
    ("namespaceSelector", &SELECTOR),
]);

static NAMED_EXPRESSION: Shape = Fields(&[("name", &OPEN), ("expression", &OPEN)]);

static SPEC: Shape = Fields(&[
    ("rules", &ListOf(&RULE)),
    ("applyRules", &OPEN),
    ("failurePolicy", &OPEN),
    ("validationFailureAction", &OPEN),
    (
        "validationFailureActionOverrides",
        &ListOf(&FAILURE_ACTION_OVERRIDE),
    ),
    ("emitWarning", &OPEN),
    ("admission", &OPEN),
    ("background", &OPEN),
    ("schemaValidation", &OPEN),
    ("webhookTimeoutSeconds", &OPEN),
    ("mutateExistingOnPolicyUpdate", &OPEN),
    ("generateExistingOnPolicyUpdate", &OPEN),
    ("generateExisting", &OPEN),
    ("useServerSideApply", &OPEN),
    ("webhookConfiguration", &OPEN),
]);

static RULE: Shape = Fields(&[
    ("name", &OPEN),
    ("context", &ListOf(&CONTEXT_ENTRY)),
    ("reportProperties", &OPEN),
    ("match", &MATCH),
    ("exclude", &MATCH),
    ("imageExtractors", &OPEN),
    ("preconditions", &OPEN),
    ("celPreconditions", &ListOf(&NAMED_EXPRESSION)),
    ("mutate", &MUTATE),
    ("validate", &VALIDATE),
    ("generate", &GENERATE),
    ("verifyImages", &OPEN),
    ("skipBackgroundRequests", &OPEN),
]);

static CONTEXT_ENTRY: Shape = Fields(&[
    ("name", &OPEN),
    (
        "configMap",
        &Fields(&[("name", &OPEN), ("namespace", &OPEN)]),
    ),
    ("apiCall", &API_CALL),
    (
        "imageRegistry",
        &Fields(&[
            ("reference", &OPEN),
            ("jmesPath", &OPEN),
            ("imageRegistryCredentials", &OPEN),
        ]),
    ),
    (
        "variable",
        &Fields(&[("value", &OPEN), ("jmesPath", &OPEN), ("default", &OPEN)]),
    ),
    (
        "globalReference",
        &Fields(&[("name", &OPEN), ("jmesPath", &OPEN)]),
    ),
]);

static API_CALL: Shape = Fields(&[
    ("urlPath", &OPEN),
    ("method", &OPEN),
    (
        "data",
        &ListOf(&Fields(&[("key", &OPEN), ("value", &OPEN)])),
    ),
    (
        "service",
        &Fields(&[
            ("url", &OPEN),
            (
                "headers",
                &ListOf(&Fields(&[("key", &OPEN), ("value", &OPEN)])),
            ),
            ("caBundle", &OPEN),
        ]),
    ),
    ("default", &OPEN),
    ("jmesPath", &OPEN),
]);

static SUBJECT: Shape = Fields(&[
    ("kind", &OPEN),
    ("apiGroup", &OPEN),
    ("name", &OPEN),
    ("namespace", &OPEN),
]);

static RESOURCE_DESCRIPTION: Shape = Fields(&[
    ("kinds", &OPEN),
    ("name", &OPEN),
    ("names", &OPEN),
    ("namespaces", &OPEN),
    ("annotations", &OPEN),
    ("selector", &SELECTOR),
    ("namespaceSelector", &SELECTOR),
    ("operations", &OPEN),
]);

/// A `match.any`/`match.all` entry: user information inline beside `resources`.
static RESOURCE_FILTER: Shape = Fields(&[
    ("resources", &RESOURCE_DESCRIPTION),
    ("roles", &OPEN),
    ("clusterRoles", &OPEN),
    ("subjects", &ListOf(&SUBJECT)),
]);

static MATCH: Shape = Fields(&[
    ("any", &ListOf(&RESOURCE_FILTER)),
    ("all", &ListOf(&RESOURCE_FILTER)),
    ("resources", &RESOURCE_DESCRIPTION),
    ("roles", &OPEN),
    ("clusterRoles", &OPEN),
    ("subjects", &ListOf(&SUBJECT)),
]);

static MUTATE: Shape = Fields(&[
    ("mutateExistingOnPolicyUpdate", &OPEN),
    ("targets", &ListOf(&TARGET)),
    ("patchStrategicMerge", &OPEN),
    ("patchesJson6902", &OPEN),
    ("foreach", &ListOf(&FOREACH_MUTATE)),
]);

static TARGET: Shape = Fields(&[
    ("apiVersion", &OPEN),
    ("kind", &OPEN),
    ("namespace", &OPEN),
    ("name", &OPEN),
    ("uid", &OPEN),
    ("selector", &SELECTOR),
    ("context", &ListOf(&CONTEXT_ENTRY)),
    ("preconditions", &OPEN),
]);

/// Nested `foreach` lists are schemaless in Kyverno's CRD: only the first level is checked.
static FOREACH_MUTATE: Shape = Fields(&[
    ("list", &OPEN),
    ("order", &OPEN),
    ("context", &ListOf(&CONTEXT_ENTRY)),
    ("preconditions", &OPEN),
    ("patchStrategicMerge", &OPEN),
    ("patchesJson6902", &OPEN),
    ("foreach", &OPEN),
]);

static VALIDATE: Shape = Fields(&[
    ("failureAction", &OPEN),
    ("failureActionOverrides", &ListOf(&FAILURE_ACTION_OVERRIDE)),
    ("allowExistingViolations", &OPEN),
    ("message", &OPEN),
    ("manifests", &OPEN),
    ("foreach", &ListOf(&FOREACH_VALIDATE)),
    ("pattern", &OPEN),
    ("anyPattern", &OPEN),
    ("deny", &DENY),
    ("podSecurity", &POD_SECURITY),
    ("cel", &CEL),
    ("assert", &OPEN),
]);

static DENY: Shape = Fields(&[("conditions", &OPEN)]);

static FOREACH_VALIDATE: Shape = Fields(&[
    ("list", &OPEN),
    ("elementScope", &OPEN),
    ("context", &ListOf(&CONTEXT_ENTRY)),
    ("preconditions", &OPEN),
    ("pattern", &OPEN),
    ("anyPattern", &OPEN),
    ("deny", &DENY),
    ("foreach", &OPEN),
]);

static POD_SECURITY: Shape = Fields(&[
    ("level", &OPEN),
    ("version", &OPEN),
    (
        "exclude",
        &ListOf(&Fields(&[
            ("controlName", &OPEN),
            ("images", &OPEN),
            ("restrictedField", &OPEN),
            ("values", &OPEN),
        ])),
    ),
]);

static CEL: Shape = Fields(&[
    (
        "expressions",
        &ListOf(&Fields(&[
            ("expression", &OPEN),
            ("message", &OPEN),
            ("messageExpression", &OPEN),
            ("reason", &OPEN),
        ])),
    ),
    (
        "paramKind",
        &Fields(&[("apiVersion", &OPEN), ("kind", &OPEN)]),
    ),
    (
        "paramRef",
        &Fields(&[
            ("name", &OPEN),
            ("namespace", &OPEN),
            ("selector", &SELECTOR),
            ("parameterNotFoundAction", &OPEN),
        ]),
    ),
    (
        "auditAnnotations",
        &ListOf(&Fields(&[("key", &OPEN), ("valueExpression", &OPEN)])),
    ),
    ("variables", &ListOf(&NAMED_EXPRESSION)),
    ("generate", &OPEN),
]);

static CLONE: Shape = Fields(&[("namespace", &OPEN), ("name", &OPEN)]);
static CLONE_LIST: Shape = Fields(&[
    ("namespace", &OPEN),
    ("kinds", &OPEN),
    ("selector", &SELECTOR),
]);

static GENERATE: Shape = Fields(&[
    ("generateExisting", &OPEN),
    ("synchronize", &OPEN),
    ("orphanDownstreamOnPolicyDelete", &OPEN),
    ("apiVersion", &OPEN),
    ("kind", &OPEN),
    ("namespace", &OPEN),
    ("name", &OPEN),
    ("uid", &OPEN),
    ("data", &OPEN),
    ("clone", &CLONE),
    ("cloneList", &CLONE_LIST),
    ("foreach", &ListOf(&FOREACH_GENERATE)),
]);

static FOREACH_GENERATE: Shape = Fields(&[
    ("list", &OPEN),
    ("context", &ListOf(&CONTEXT_ENTRY)),
    ("preconditions", &OPEN),
    ("apiVersion", &OPEN),
    ("kind", &OPEN),
    ("namespace", &OPEN),
    ("name", &OPEN),
    ("uid", &OPEN),
    ("data", &OPEN),
    ("clone", &CLONE),
    ("cloneList", &CLONE_LIST),
]);

static POLICY: Shape = Fields(&[
    ("apiVersion", &OPEN),
    ("kind", &OPEN),
    ("metadata", &OPEN),
    ("spec", &SPEC),
    ("status", &OPEN),
]);

/// The path and name of the first field of a ClusterPolicy/Policy document that Kyverno's
/// schema does not declare, e.g. `spec.rules[0].validate.messages`.
pub(super) fn unknown_field(doc: &Value) -> Option<(String, String)> {
    // An explicit stack: the depth is bounded by the schema, not by the input.
    let mut stack: Vec<(&Value, &Shape, String)> = vec![(doc, &POLICY, String::new())];
    while let Some((value, shape, path)) = stack.pop() {
        match (shape, value) {
            (Fields(fields), Value::Object(map)) => {
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match fields.iter().find(|(name, _)| name == key) {
                        Some((_, Open)) => {}
                        Some((_, shape)) => stack.push((child, shape, child_path)),
                        None => return Some((child_path, key.clone())),
                    }
                }
            }
            (ListOf(item), Value::Array(items)) => {
                for (i, child) in items.iter().enumerate().rev() {
                    stack.push((child, item, format!("{path}[{i}]")));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rule: Value) -> Value {
        json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
               "spec": {"rules": [rule]}})
    }

    #[test]
    fn undeclared_fields_are_named_by_path() {
        let cases = [
            (
                json!({"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                       "validate": {"messages": "x", "pattern": {"spec": {"anything": "goes"}}}}),
                Some("spec.rules[0].validate.messages"),
            ),
            (
                json!({"name": "r", "match": {"any": [{"resources": {"kind": ["Pod"]}}]},
                       "validate": {"message": "x", "pattern": {}}}),
                Some("spec.rules[0].match.any[0].resources.kind"),
            ),
            (
                json!({"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                       "context": [{"name": "c", "variable": {"jmespath": "x"}}],
                       "validate": {"deny": {}}}),
                Some("spec.rules[0].context[0].variable.jmespath"),
            ),
            // Open fields, legacy forms, user information inline and nested foreach entries
            // (schemaless in Kyverno) accept anything.
            (
                json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}, "clusterRoles": ["x"],
                                             "any": [{"subjects": [{"kind": "User", "name": "u"}]}]},
                       "preconditions": {"any": [{"key": "a", "operator": "Equals", "value": "b", "extra": 1}]},
                       "mutate": {"foreach": [{"list": "x", "foreach": [{"whatever": 1}],
                                              "patchStrategicMerge": {"spec": {"x": 1}}}]},
                       "verifyImages": [{"imageReferences": ["*"], "someNewField": true}]}),
                None,
            ),
        ];
        for (rule, want) in cases {
            assert_eq!(
                unknown_field(&policy(rule)).map(|(p, _)| p).as_deref(),
                want
            );
        }
        assert_eq!(
            unknown_field(
                &json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
                                  "metadata": {"name": "p"}, "spec": {"validationFailureActions": "Audit"}})
            ),
            Some((
                "spec.validationFailureActions".to_string(),
                "validationFailureActions".to_string()
            ))
        );
    }
}
