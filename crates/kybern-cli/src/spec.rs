//! The kyverno CLI file formats: `Test` (kyverno-test.yaml), `Values` and `UserInfo`.
//! Decoding is strict about unknown fields but matches field names case-insensitively, as the
//! kyverno CLI does.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A `cli.kyverno.io/v1alpha1` Test.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Test {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: Value,
    /// Deprecated top-level name: its presence makes the file a deprecated schema.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub target_resources: Vec<String>,
    #[serde(default)]
    pub param_resources: Vec<String>,
    #[serde(default)]
    pub exceptions: Vec<String>,
    #[serde(default)]
    pub variables: Option<String>,
    #[serde(default)]
    pub userinfo: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub cluster_resources: Vec<String>,
    #[serde(default)]
    pub json_payload: Option<String>,
    #[serde(default)]
    pub json_payloads: Vec<String>,
    #[serde(default)]
    pub http_payloads: Vec<String>,
    #[serde(default)]
    pub envoy_payloads: Vec<String>,
    #[serde(default)]
    pub api_call_responses: Vec<ApiCallResponse>,
    #[serde(default)]
    pub global_context_entries: Vec<GlobalContextEntry>,
    #[serde(default)]
    pub values: Option<ValuesSpec>,
    #[serde(default)]
    pub results: Vec<TestResult>,
}

/// One expected result row. `kind` and the `is*Policy` flags are documentation only, as in
/// `kyverno test`; they are decoded so that strict decoding accepts them.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestResult {
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub rule: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    #[serde(default)]
    pub resource_specs: Vec<Value>,
    #[serde(default)]
    pub result: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub patched_resources: Option<String>,
    #[serde(default)]
    pub generated_resource: Option<String>,
    #[serde(default)]
    pub generated_resources: Vec<String>,
    #[serde(default)]
    pub clone_source_resource: Option<String>,
    #[serde(default)]
    pub fail_on_missing_resources: bool,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub is_validating_admission_policy: bool,
    #[serde(default)]
    pub is_mutating_admission_policy: bool,
    #[serde(default)]
    pub is_validating_policy: bool,
    #[serde(default)]
    pub is_mutating_policy: bool,
    #[serde(default)]
    pub is_generating_policy: bool,
    #[serde(default)]
    pub is_deleting_policy: bool,
    #[serde(default)]
    pub is_image_validating_policy: bool,
}

impl TestResult {
    /// The expected result (`status` is the older spelling).
    pub fn expected(&self) -> &str {
        if self.result.is_empty() {
            &self.status
        } else {
            &self.result
        }
    }
}

/// A mocked `apiCall` response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCallResponse {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_path: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub response: ApiResponse,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResponse {
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub body: Value,
}

/// Offline data for a GlobalContextEntry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalContextEntry {
    pub name: String,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub resources: Vec<Value>,
    #[serde(default)]
    pub resource_files: Vec<String>,
    #[serde(default)]
    pub field_path: Option<String>,
    #[serde(default)]
    pub projections: Vec<Projection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    pub name: String,
    #[serde(default)]
    pub path: String,
}

/// A `Values` file or inline `values:`.
#[allow(dead_code)] // `metadata` is accepted and ignored, as the kyverno CLI does
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValuesSpec {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub global_values: Map<String, Value>,
    #[serde(default)]
    pub policies: Vec<PolicyValues>,
    #[serde(default)]
    pub namespace_selector: Vec<NamespaceSelectorValue>,
    #[serde(default)]
    pub namespaces: Vec<Value>,
    #[serde(default)]
    pub subresources: Vec<SubresourceValue>,
}

/// Maps a subresource kind (e.g. `autoscaling/v1 Scale`) to the resource it belongs to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubresourceValue {
    pub subresource: ApiResource,
    pub parent_resource: ApiResource,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiResource {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyValues {
    pub name: String,
    #[serde(default)]
    pub resources: Vec<ResourceValues>,
    #[serde(default)]
    pub rules: Vec<RuleValuesSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceValues {
    pub name: String,
    #[serde(default)]
    pub values: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleValuesSpec {
    pub name: String,
    #[serde(default)]
    pub values: Map<String, Value>,
    #[serde(default)]
    pub foreach_values: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelectorValue {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A `UserInfo` file.
#[allow(dead_code)] // `metadata` is accepted and ignored, as the kyverno CLI does
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfoSpec {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub cluster_roles: Vec<String>,
    #[serde(default)]
    pub user_info: kybern_engine::request::UserInfo,
}

const TEST_FIELDS: [&str; 21] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "policies",
    "resources",
    "targetResources",
    "paramResources",
    "exceptions",
    "variables",
    "userinfo",
    "context",
    "clusterResources",
    "jsonPayload",
    "jsonPayloads",
    "httpPayloads",
    "envoyPayloads",
    "apiCallResponses",
    "globalContextEntries",
    "values",
    "results",
];

const RESULT_FIELDS: [&str; 22] = [
    "policy",
    "rule",
    "kind",
    "resources",
    "resourceSpecs",
    "result",
    "status",
    "operation",
    "patchedResources",
    "generatedResource",
    "generatedResources",
    "cloneSourceResource",
    "failOnMissingResources",
    "namespace",
    "isValidatingAdmissionPolicy",
    "isMutatingAdmissionPolicy",
    "isValidatingPolicy",
    "isMutatingPolicy",
    "isGeneratingPolicy",
    "isDeletingPolicy",
    "isImageValidatingPolicy",
    "resource",
];

fn normalize_keys(v: &mut Value, known: &[&str]) {
    if let Value::Object(map) = v {
        let renames: Vec<(String, String)> = map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .filter_map(|k| {
                known
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(k))
                    .map(|n| (k.clone(), (*n).to_string()))
            })
            .collect();
        for (from, to) in renames {
            if let Some(val) = map.remove(&from) {
                map.insert(to, val);
            }
        }
    }
}

/// Decodes a Test document with case-insensitive field names.
pub fn decode_test(mut v: Value) -> Result<Test, String> {
    normalize_keys(&mut v, &TEST_FIELDS);
    if let Some(Value::Array(results)) = v.get_mut("results") {
        for r in results {
            normalize_keys(r, &RESULT_FIELDS);
        }
    }
    serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}
