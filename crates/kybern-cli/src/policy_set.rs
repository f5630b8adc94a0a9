//! Turning documents into compiled policies and exceptions, reporting each one that cannot be used
//! without losing the others.

use crate::files::{Document, Issue};
use kybern_engine::exceptions::PolicyException;
use kybern_engine::policy::{Policy, PolicyLoadErrorKind, compile_policy};
use serde_json::Value;

/// Policy kinds Kyverno knows that this build cannot evaluate yet.
const UNSUPPORTED_KINDS: [&str; 16] = [
    "ValidatingPolicy",
    "NamespacedValidatingPolicy",
    "MutatingPolicy",
    "NamespacedMutatingPolicy",
    "GeneratingPolicy",
    "NamespacedGeneratingPolicy",
    "DeletingPolicy",
    "NamespacedDeletingPolicy",
    "ImageValidatingPolicy",
    "NamespacedImageValidatingPolicy",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "CleanupPolicy",
    "ClusterCleanupPolicy",
];

/// Everything loaded from policy files.
#[derive(Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    pub exceptions: Vec<PolicyException>,
    /// ValidatingPolicies and ValidatingAdmissionPolicies with their bindings.
    pub cel: crate::cel_policies::CelPolicies,
    /// Names of policies Kyverno itself would reject (they are reported and not applied).
    pub invalid: Vec<String>,
    /// Names of policies of kinds this build cannot evaluate yet.
    pub unsupported: Vec<String>,
    /// Problems to report: unreadable files, broken documents, unsupported kinds.
    pub issues: Vec<Issue>,
}

fn doc_name(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl PolicySet {
    /// Adds the policies among `docs`; other kinds are reported when `strict`.
    pub fn add_policies(&mut self, docs: &[Document], strict: bool) {
        for d in docs {
            let kind = d
                .value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if kind == "PolicyException" {
                self.add_exception(d);
                continue;
            }
            match self.cel.add(d) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(issue) => {
                    self.invalid.push(doc_name(&d.value));
                    self.issues.push(issue);
                    continue;
                }
            }
            match compile_policy(&d.value) {
                Ok(p) => self.policies.push(p),
                Err(e) if e.kind == PolicyLoadErrorKind::UnknownKind => {
                    if UNSUPPORTED_KINDS.contains(&kind) {
                        self.unsupported.push(doc_name(&d.value));
                        self.issues.push(Issue {
                            file: d.file.clone(),
                            index: Some(d.index),
                            message: format!(
                                "{kind} {:?}: policies of kind {kind} are not supported by kybern yet",
                                doc_name(&d.value)
                            ),
                        });
                    } else if strict {
                        self.issues.push(Issue {
                            file: d.file.clone(),
                            index: Some(d.index),
                            message: format!("{}: {}", e.path, e.message),
                        });
                    }
                }
                Err(e) => {
                    if e.kind == PolicyLoadErrorKind::Invalid {
                        self.invalid.push(doc_name(&d.value));
                    }
                    self.issues.push(Issue {
                        file: d.file.clone(),
                        index: Some(d.index),
                        message: format!(
                            "policy {:?} at {}: {}",
                            doc_name(&d.value),
                            e.path,
                            e.message
                        ),
                    });
                }
            }
        }
    }

    /// Adds one PolicyException document.
    pub fn add_exception(&mut self, d: &Document) {
        let api = d
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if api.starts_with("policies.kyverno.io/") {
            if let Err(issue) = self.cel.add(d) {
                self.issues.push(issue);
            }
            return;
        }
        match PolicyException::compile(&d.value) {
            Ok(e) => self.exceptions.push(e),
            Err(e) => self.issues.push(Issue {
                file: d.file.clone(),
                index: Some(d.index),
                message: format!(
                    "PolicyException {:?} at {}: {}",
                    doc_name(&d.value),
                    e.path,
                    e.message
                ),
            }),
        }
    }
}
