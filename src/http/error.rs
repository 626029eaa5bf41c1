//! API errors: one enum, each with its status and code, rendered as
//! `{"success": false, "error": {"code", "message"}}`.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::api::{ErrorBody, ErrorDetail};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields for the error object (e.g. a task id on a timeout).
    pub extra: Option<serde_json::Value>,
    /// Seconds for the `Retry-After` header (a 429 has 5 when unset).
    pub retry_after_s: Option<u64>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
            retry_after_s: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure inside this node (a worker thread that died), not the request's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn reply(&self) -> warp::reply::Response {
        let extra = match &self.extra {
            Some(serde_json::Value::Object(extra)) => extra.clone(),
            _ => serde_json::Map::new(),
        };
        let body = ErrorBody {
            success: false,
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                extra,
            },
        };
        let mut reply =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        let retry_after = match self.retry_after_s {
            Some(seconds) => Some(seconds),
            None if self.status == StatusCode::TOO_MANY_REQUESTS => Some(5),
            None => None,
        };
        if let Some(seconds) = retry_after {
            reply
                .headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from(seconds));
        }
        reply
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QueueFull { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
            }
            StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            ),
            StoreError::DatasetQuota { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "dataset_quota_exceeded",
                e.to_string(),
            ),
            StoreError::Corrupt(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_corrupt",
                e.to_string(),
            ),
        }
    }
}

/// Maps every rejection, ours and warp's, to a JSON error.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.reply());
    } else if rejection.is_not_found() {
        ApiError::not_found("not_found", "no such route")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is over the size limit",
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "unsupported content type",
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request("invalid_query", format!("invalid query string: {e}"))
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a content-length is required",
        )
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::internal("internal error")
    };
    Ok(error.reply())
}

/// Answers a route's own errors there, so a handler's 404 (an unknown task, say) is not
/// outranked by another route's 405; every other rejection goes on to the next route.
pub async fn route_errors(rejection: Rejection) -> Result<warp::reply::Response, Rejection> {
    match rejection.find::<ApiError>() {
        Some(e) => Ok(e.reply()),
        None => Err(rejection),
    }
}
