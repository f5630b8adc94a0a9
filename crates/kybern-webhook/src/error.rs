//! The one HTTP error type: every client-visible failure renders as a JSON body with a status code.
//! Internal details are logged, never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request could not be answered with an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is empty")]
    EmptyBody,
    #[error("expected Content-Type application/json, got {0:?}")]
    UnsupportedMediaType(String),
    #[error("request body is not a valid AdmissionReview: {0}")]
    InvalidReview(String),
    #[error("the object nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("only admission.k8s.io/v1 AdmissionReview is supported, got {0}")]
    UnsupportedVersion(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has no uid")]
    MissingUid,
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("request body was not received in time")]
    BodyTimeout,
    #[error("could not read request body")]
    BodyRead,
    /// The memory budget of requests in flight has no room for this one.
    #[error("{0}")]
    Overloaded(#[from] crate::budget::BudgetError),
    /// The request's namespace is not known here and asking for it failed: the webhook's
    /// failurePolicy decides, as for any webhook that cannot answer.
    #[error("the labels of namespace {namespace:?} could not be read: {reason}")]
    NamespaceLookup { namespace: String, reason: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("not found")]
    NotFound,
    /// Something went wrong on our side; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status, following Kyverno's admission handler where it has one.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::EmptyBody
            | ApiError::TooDeep(_)
            | ApiError::UnsupportedVersion(_)
            | ApiError::MissingRequest
            | ApiError::MissingUid
            | ApiError::UnknownOperation(_)
            | ApiError::BodyRead => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // Kyverno answers undecodable JSON with 417.
            ApiError::InvalidReview(_) => StatusCode::EXPECTATION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Overloaded(_) | ApiError::NamespaceLookup { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error while handling a request");
        } else if let ApiError::NamespaceLookup { .. } = &self {
            tracing::warn!(error = %self, "request left to the failure policy");
        } else {
            tracing::debug!(error = %self, code = status.as_u16(), "rejected request");
        }
        let body = json!({"error": {"code": status.as_u16(), "message": self.to_string()}});
        (status, Json(body)).into_response()
    }
}
