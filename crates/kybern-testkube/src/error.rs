//! The one error type of the fake: an API error as a `metav1.Status` carries it.

use serde_json::{Value, json};

/// An API error. Each variant maps to the HTTP code and `reason` the real API server uses, and
/// renders as a `metav1.Status` body (see [`StoreError::to_status`]), which kube-rs parses into
/// `kube::Error::Api` and `kubectl` prints.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// 404 `NotFound`: no such object or resource type.
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: String, name: String },
    /// 409 `AlreadyExists`: create of a name that is taken.
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists { kind: String, name: String },
    /// 409 `Conflict`: a stale `resourceVersion`, a failed precondition or an apply conflict.
    #[error("operation cannot be fulfilled on {kind} \"{name}\": {message}")]
    Conflict {
        kind: String,
        name: String,
        message: String,
    },
    /// 422 `Invalid`: the object is not acceptable (missing name, bad CRD, failed JSON patch test).
    #[error("{kind} \"{name}\" is invalid: {message}")]
    Invalid {
        kind: String,
        name: String,
        message: String,
    },
    /// 403 `Forbidden`, e.g. creating in a namespace that is being deleted.
    #[error("{message}")]
    Forbidden { message: String },
    /// 400 `BadRequest`: undecodable body or query.
    #[error("{0}")]
    BadRequest(String),
    /// 405 `MethodNotAllowed`.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 415 `UnsupportedMediaType`, e.g. a strategic merge patch of a custom resource.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 410 `Expired`: a watch or continue token older than the kept history.
    #[error("{0}")]
    Expired(String),
    /// Any other code: failures injected by [`crate::Faults::fail`], unknown paths (404),
    /// bodies over the size limit (413).
    #[error("{message}")]
    Other { code: u16, message: String },
}

impl StoreError {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::AlreadyExists { .. } | StoreError::Conflict { .. } => 409,
            StoreError::Invalid { .. } => 422,
            StoreError::Forbidden { .. } => 403,
            StoreError::BadRequest(_) => 400,
            StoreError::MethodNotAllowed => 405,
            StoreError::UnsupportedMediaType(_) => 415,
            StoreError::Expired(_) => 410,
            StoreError::Other { code, .. } => *code,
        }
    }

    /// The `reason` field, as the real server names it.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Other { code, .. } => reason_for_code(*code),
            StoreError::Expired(_) => "Expired",
            StoreError::AlreadyExists { .. } => "AlreadyExists",
            other => reason_for_code(other.code()),
        }
    }

    /// Fills in the object of an `Invalid` error raised before the object was known.
    pub(crate) fn for_object(self, kind: &str, name: &str) -> StoreError {
        match self {
            StoreError::Invalid {
                kind: k,
                name: n,
                message,
            } if k.is_empty() && n.is_empty() => StoreError::Invalid {
                kind: kind.to_string(),
                name: name.to_string(),
                message,
            },
            other => other,
        }
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            StoreError::NotFound { kind, name }
            | StoreError::AlreadyExists { kind, name }
            | StoreError::Conflict { kind, name, .. }
            | StoreError::Invalid { kind, name, .. } => Some(json!({"name": name, "kind": kind})),
            _ => None,
        };
        if let (Some(d), Some(map)) = (details, status.as_object_mut()) {
            map.insert("details".to_string(), d);
        }
        status
    }
}

/// The `reason` the real server uses for a code (`metav1.StatusReason`).
pub(crate) fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_renders_as_status_with_details() {
        let e = StoreError::NotFound {
            kind: "configmaps".into(),
            name: "x".into(),
        };
        let s = e.to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["details"]["name"], "x");
        assert_eq!(s["message"], "configmaps \"x\" not found");
    }

    #[test]
    fn injected_codes_get_the_real_reason() {
        let e = StoreError::Other {
            code: 503,
            message: "down".into(),
        };
        assert_eq!(e.reason(), "ServiceUnavailable");
        assert_eq!(StoreError::Expired("old".into()).reason(), "Expired");
    }
}
