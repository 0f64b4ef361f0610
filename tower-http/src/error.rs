//! The one HTTP error type: every failure maps to one status and a JSON body
//! `{"error": {"code", "message", "field"?}}`. 5xx bodies are generic; the full cause chain goes
//! to the log.

use flagtower_core::{BoxError, Error as ServiceError, ErrorChain, InputError};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

/// A failed request.
#[derive(Debug)]
pub enum ApiError {
    /// Malformed JSON, a body that is not an object, or a bad path/query parameter.
    BadRequest(String),
    /// Unknown route, app or flag.
    NotFound(String),
    /// A known route with another method.
    MethodNotAllowed(&'static [&'static str]),
    /// A duplicate title.
    Conflict(String),
    /// A body over the limit.
    PayloadTooLarge(usize),
    /// A body that did not arrive in time.
    RequestTimeout(std::time::Duration),
    /// A body that is not `application/json`.
    UnsupportedMediaType,
    /// A `Host` this server does not answer (DNS rebinding).
    MisdirectedRequest,
    /// No credentials, or ones this server does not know (authentication is on).
    Unauthorized(&'static str),
    /// Credentials that do not open this route, or a cross-site request with a session cookie.
    Forbidden(&'static str),
    /// The client made more changes than its rate limit allows; it may retry after this long.
    TooManyRequests(std::time::Duration),
    /// A field failed validation or is unknown.
    Validation {
        /// The field.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The change would make the app's ruleset larger than the publisher can deliver.
    RulesetTooLarge {
        /// The ruleset's size after the change, in bytes.
        size: usize,
        /// The publisher's limit, in bytes.
        limit: usize,
    },
    /// A backend is down; the client should retry.
    Unavailable(BoxError),
    /// The server is at one of its limits (open streams); the client should retry.
    Busy(&'static str),
    /// Anything else.
    Internal(BoxError),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// Seconds a client should wait before retrying after a 503.
pub(crate) const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Validation { .. } | Self::RulesetTooLarge { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Unavailable(_) | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::RequestTimeout(_) => "request_timeout",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MisdirectedRequest => "misdirected_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyRequests(_) => "rate_limited",
            Self::Validation { .. } => "validation_failed",
            Self::RulesetTooLarge { .. } => "ruleset_too_large",
            Self::Unavailable(_) => "unavailable",
            Self::Busy(_) => "busy",
            Self::Internal(_) => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::BadRequest(m) | Self::NotFound(m) | Self::Conflict(m) => m.clone(),
            Self::Validation { field: Some(f), message } => format!("{f}: {message}"),
            Self::Validation { field: None, message } => message.clone(),
            Self::MethodNotAllowed(allow) => {
                format!("method not allowed; this route accepts {}", allow.join(", "))
            }
            Self::PayloadTooLarge(limit) => format!("request body exceeds {limit} bytes"),
            Self::RulesetTooLarge { size, limit } => format!(
                "this change would make the app's ruleset {size} bytes, over the {limit} bytes the publisher can deliver in one message (NATS max_payload less 128 bytes for headers); shorten whitelists or descriptions, or move flags to another app"
            ),
            Self::RequestTimeout(t) => format!("request body not received within {t:?}"),
            Self::UnsupportedMediaType => "request body must be application/json".to_owned(),
            Self::MisdirectedRequest => {
                "this server does not answer for that Host; list the name in TOWER_ALLOWED_HOSTS"
                    .to_owned()
            }
            Self::Unavailable(_) => "a backend is unavailable; retry shortly".to_owned(),
            Self::Busy(what) => format!("{what}; retry shortly"),
            Self::Unauthorized(why) | Self::Forbidden(why) => (*why).to_owned(),
            Self::TooManyRequests(wait) => format!(
                "too many changes from this client; retry in {} ms (TOWER_RATE_LIMIT)",
                wait.as_millis().max(1)
            ),
            Self::Internal(_) => "internal server error".to_owned(),
        }
    }

    /// Logs the error (5xx with their cause chain at error level) and renders the response.
    pub fn into_response(self) -> http::Response<bytes::Bytes> {
        match &self {
            Self::Unavailable(e) => {
                tracing::warn!(error = %ErrorChain(&**e), "backend unavailable")
            }
            Self::Internal(e) => tracing::error!(error = %ErrorChain(&**e), "request failed"),
            _ => {}
        }
        let message = self.message();
        let field = match &self {
            Self::Validation { field, .. } => field.as_deref(),
            // Only titles must be unique.
            Self::Conflict(_) => Some("title"),
            _ => None,
        };
        let body = serde_json::to_vec(&Body {
            error: Detail { code: self.code(), message: &message, field },
        })
        .unwrap_or_else(|_| {
            b"{\"error\":{\"code\":\"internal\",\"message\":\"internal server error\"}}".to_vec()
        });
        let mut res = crate::json_response(self.status(), body);
        match &self {
            Self::MethodNotAllowed(allow) => {
                if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                    res.headers_mut().insert(http::header::ALLOW, v);
                }
            }
            Self::TooManyRequests(wait) => {
                // Whole seconds, rounded up: a client waiting that long finds a token.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            // RFC 6750: the scheme a client should authenticate with.
            Self::Unauthorized(_) => {
                res.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tower\""),
                );
            }
            Self::Unavailable(_) | Self::Busy(_) => {
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            // What is left of an oversized body is not read: the connection cannot be reused.
            Self::PayloadTooLarge(_) => {
                res.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        res
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(r) => Self::NotFound(format!("{r} not found")),
            ServiceError::Conflict { what, title } => {
                Self::Conflict(format!("{} titled {title:?} already exists", what.with_article()))
            }
            ServiceError::Invalid { field, message } => {
                Self::BadRequest(format!("{field}: {message}"))
            }
            ServiceError::Unavailable(e) => Self::Unavailable(e),
            ServiceError::TooLarge { size, limit } => Self::RulesetTooLarge { size, limit },
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::NotAnObject => Self::BadRequest(e.to_string()),
            InputError::Invalid { field, message } => {
                Self::Validation { field: Some(field), message }
            }
            InputError::UnknownField { field } => {
                Self::Validation { field: Some(field), message: "unknown field".to_owned() }
            }
            other => Self::Validation { field: None, message: other.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(e: ApiError) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let res = e.into_response();
        let (parts, body) = res.into_parts();
        let bytes = body;
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connection to 10.0.0.7:5432 refused (password=hunter2)")]
    struct Secret;

    #[tokio::test]
    async fn server_errors_are_generic_and_retryable_ones_say_when() {
        let (status, headers, body) = render(ApiError::Unavailable(Box::new(Secret))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get(http::header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(!body.to_string().contains("hunter2") && !body.to_string().contains("5432"));
        let (status, _, body) = render(ApiError::Internal(Box::new(Secret))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "internal", "message": "internal server error"}})
        );
    }

    #[tokio::test]
    async fn service_errors_map_to_their_statuses() {
        use flagtower_core::{Resource, StoreError};
        let cases: Vec<(ServiceError, StatusCode)> = vec![
            (StoreError::NotFound(Resource::Flag).into(), StatusCode::NOT_FOUND),
            (
                StoreError::AlreadyExists { what: Resource::App, title: "a".into() }.into(),
                StatusCode::CONFLICT,
            ),
            (StoreError::Unavailable(Box::new(Secret)).into(), StatusCode::SERVICE_UNAVAILABLE),
            (StoreError::Backend(Box::new(Secret)).into(), StatusCode::INTERNAL_SERVER_ERROR),
            (
                ServiceError::Invalid { field: "timeRange", message: "x".into() },
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e).status(), status);
        }
        let (status, headers, body) = render(ApiError::MethodNotAllowed(&["GET", "POST"])).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers.get(http::header::ALLOW).unwrap(), "GET, POST");
        assert_eq!(body["error"]["code"], "method_not_allowed");
        let (status, _, body) = render(InputError::UnknownField { field: "x".into() }.into()).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("x"))
        );
    }
}
