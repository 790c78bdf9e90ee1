//! Every error a request can end in, mapped to its HTTP status and JSON body in this one place.

use crate::app::DirectionOff;
use crate::store::StoreError;
use serde_json::json;
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// Retry-After for a transient failure with no better hint.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("empty body")]
    EmptyBody,
    #[error("missing X-CF-Event-Id")]
    MissingEventId,
    #[error("invalid signature")]
    InvalidSignature,
    #[error("invalid callback secret")]
    InvalidCallbackSecret,
    /// The status page without its key (or session).
    #[error("the status page needs its key")]
    Unauthorized,
    /// A status-page change without a valid CSRF token.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{} is off", .0.direction)]
    DirectionOff(DirectionOff),
    #[error("{0}")]
    Unavailable(String, Option<Duration>),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("body larger than 1 MiB")]
    PayloadTooLarge,
    #[error("Content-Length required")]
    LengthRequired,
    #[error("content type must be JSON")]
    UnsupportedMediaType,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::EmptyBody | ApiError::MissingEventId | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidSignature | ApiError::InvalidCallbackSecret | ApiError::Unauthorized => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::DirectionOff(_) | ApiError::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short outcome word for the request log.
    pub fn outcome(&self) -> &'static str {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::UNAUTHORIZED => "unauthorized",
            _ => "rejected",
        }
    }

    /// The answer; `correlation_id` (the request log line's) goes into the body of an error a request ended in.
    pub fn into_response(self, correlation_id: Option<&str>) -> Response {
        let status = self.status();
        let (mut body, retry_after) = match &self {
            ApiError::DirectionOff(off) => (
                json!({
                    "error": format!("{} is not configured", off.direction),
                    "problems": off.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
                None,
            ),
            ApiError::Unavailable(message, retry_after) => {
                (json!({ "error": message }), Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)))
            }
            other => (json!({ "error": other.to_string() }), None),
        };
        if let Some(id) = correlation_id {
            body["correlationId"] = json!(id);
        }
        let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        if let Some(after) = retry_after {
            let secs = after.as_secs().max(1).to_string();
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, secs.parse().expect("digits are a header value"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(format!("state storage: {e}"), None)
    }
}

/// The body is over the limit (our own rejection: warp's constructor is private).
#[derive(Debug)]
pub(crate) struct TooLarge;
impl warp::reject::Reject for TooLarge {}

/// A body of unknown length.
#[derive(Debug)]
pub(crate) struct LengthRequired;
impl warp::reject::Reject for LengthRequired {}

/// The body could not be read to its end (the sender broke off or sent a malformed chunk).
#[derive(Debug)]
pub(crate) struct UnreadableBody;
impl warp::reject::Reject for UnreadableBody {}

/// Maps warp's own rejections (no route, wrong method, size limits) to our JSON errors.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let error = if rejection.find::<TooLarge>().is_some() || rejection.find::<warp::reject::PayloadTooLarge>().is_some()
    {
        ApiError::PayloadTooLarge
    } else if rejection.find::<LengthRequired>().is_some() || rejection.find::<warp::reject::LengthRequired>().is_some()
    {
        ApiError::LengthRequired
    } else if rejection.find::<UnreadableBody>().is_some() {
        ApiError::BadRequest("unreadable body".into())
    } else if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::UnsupportedMediaType
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else {
        ApiError::BadRequest("malformed request".into())
    };
    Ok(error.into_response(None))
}
