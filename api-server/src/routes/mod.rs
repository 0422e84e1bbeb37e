//! The HTTP surface: the route table ([`configure`]), the JSON error handlers of actix's
//! extractors, CORS, the 404 fallback and the middleware giving each request its id, its
//! access-log line and its metrics ([`observe`]).
//!
//! One module per resource holds its handlers, their request types and their OpenAPI
//! annotations; [`openapi`] gathers them into one document.

pub mod attachments;
pub mod auth;
pub mod conversations;
pub mod cors;
pub mod deadline;
pub mod health;
pub mod internal;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod receipts;
pub mod sync;
pub mod users;

#[cfg(test)]
pub(crate) mod test_support;

use crate::error::ApiError;
use crate::settings::Limits;
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, Resource, Responder, ResponseError};
use shared::errors::ErrorCode;
use shared::request_id::{self, RequestId};
use std::time::Instant;
use tracing::Instrument;

/// Register every route, and the extractor configurations whose errors answer with the API's
/// JSON error shape (query strings are read by [`Query`]).
pub fn configure(cfg: &mut web::ServiceConfig, limits: &Limits) {
    cfg.app_data(json_config(limits.body_bytes))
        .app_data(web::PathConfig::default().error_handler(path_error))
        // Operations.
        .service(resource("/health").route(web::get().to(health::health)))
        .service(resource("/ready").route(web::get().to(health::ready)))
        .service(resource("/metrics").route(web::get().to(metrics::metrics)))
        .service(resource("/api/openapi.json").route(web::get().to(openapi::openapi_json)))
        // Accounts and sessions.
        .service(resource("/api/auth/register").route(web::post().to(auth::register)))
        .service(resource("/api/auth/login").route(web::post().to(auth::login)))
        .service(resource("/api/auth/logout").route(web::post().to(auth::logout)))
        .service(resource("/api/auth/me").route(web::get().to(auth::me)))
        .service(resource("/api/users").route(web::get().to(users::search)))
        // Conversations, messages, receipts, sync.
        .service(
            resource("/api/conversations")
                .route(web::get().to(conversations::list))
                .route(web::post().to(conversations::create)),
        )
        .service(resource("/api/conversations/{id}").route(web::get().to(conversations::get)))
        .service(
            resource("/api/conversations/{id}/messages").route(web::get().to(messages::history)),
        )
        .service(
            resource("/api/conversations/{id}/delivered")
                .route(web::post().to(receipts::delivered)),
        )
        .service(resource("/api/conversations/{id}/read").route(web::post().to(receipts::read)))
        .service(resource("/api/messages").route(web::post().to(messages::send)))
        .service(resource("/api/sync").route(web::get().to(sync::sync)))
        // Image and voice uploads.
        .configure(attachments::configure)
        // The relay's port (service token; not in the OpenAPI document).
        .configure(internal::configure);
}

/// A resource answering 405 `method_not_allowed` (JSON) to the methods it does not route.
pub(crate) fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| json_error(err).into())
}

/// What a JSON body extractor failure answers.
fn json_error(err: JsonPayloadError) -> ApiError {
    use actix_web::error::PayloadError;
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        ),
        JsonPayloadError::Payload(PayloadError::Overflow) => {
            ApiError::code(ErrorCode::PayloadTooLarge)
        }
        JsonPayloadError::Payload(ref e) if deadline::timed_out(e) => {
            ApiError::code(ErrorCode::RequestTimeout)
        }
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::InvalidJson,
            "the body must be JSON with Content-Type: application/json",
        ),
        // serde names the field and the position: "missing field `password` at line 1 column 20".
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}"))
        }
        other => ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body could not be read: {other}"),
        ),
    }
}

/// A query string read into `T`, strictly: one that does not decode to UTF-8 (`%FF`) is refused
/// (actix's `web::Query` would put U+FFFD in place of the bad bytes and go on), and a value
/// that does not parse is refused naming its parameter (`validation_failed`, `field: "limit"`
/// for `?limit=abc`), where actix's names none.
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned> actix_web::FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(query(req.query_string()).map(Query))
    }
}

fn query<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    if std::str::from_utf8(&percent_decoded(text)).is_err() {
        return Err(ApiError::invalid(
            "query",
            "the query string does not decode to UTF-8",
        ));
    }
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(text.as_bytes()));
    serde_path_to_error::deserialize(pairs).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." {
            "query"
        } else {
            field.as_str()
        };
        ApiError::invalid(field, e.into_inner().to_string())
    })
}

/// `%XX` escapes decoded; anything else (a `%` without two hex digits included) kept as is.
fn percent_decoded(text: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(text).collect()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let reason = match err {
        PathError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    ApiError::invalid("path", reason).into()
}

impl Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

/// The fallback of unmatched paths: 404 `not_found`.
pub async fn not_found() -> ApiError {
    ApiError::code(ErrorCode::NotFound)
}

/// A known path with a method it does not serve: 405 `method_not_allowed`.
pub async fn method_not_allowed() -> ApiError {
    ApiError::code(ErrorCode::MethodNotAllowed)
}

/// 429 `rate_limited` with `Retry-After` in whole seconds (rounded up, at least 1); `what` says
/// what was limited.
pub(crate) fn rate_limited(retry_after: std::time::Duration, what: &str) -> HttpResponse {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut response = ApiError::new(
        ErrorCode::RateLimited,
        format!("{what}, try again in {secs} s"),
    )
    .error_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    response
}

/// Every request: its id (the incoming `x-request-id` when valid, else a new one) in the
/// response header and in a `request` span entered for the handler, so that every log line of
/// the request carries it; one access-log line (target `parley::access`, info: method, route
/// pattern, status, latency, id); and the metrics. Routes are labelled by pattern
/// (`/api/conversations/{id}`), never by raw path, so that ids do not explode the label set;
/// `unmatched` for 404s. Outermost, so that it sees what the other middlewares answer too.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = RequestId::from_header(
        req.headers()
            .get(request_id::HEADER)
            .map(header::HeaderValue::as_bytes),
    );
    let span = tracing::info_span!("request", request_id = %id);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = method_label(req.method());
    // Before routing the pattern comes from the resource map; after it, from the resource
    // that actually answered. Both are patterns, never the raw path.
    let before = req.match_pattern();
    // The inner services start work when called, not only when polled: both in the span.
    let call = span.in_scope(|| next.call(req));
    let mut result = call.instrument(span).await;
    let elapsed = started.elapsed();
    // Handlers' errors are responses by now; an `Err` is a middleware's, which actix turns
    // into its response later, without our header (none of ours returns one).
    let (status, route) = match &result {
        Ok(response) => (
            response.status(),
            response.request().match_pattern().or(before),
        ),
        Err(e) => (e.as_response_error().status_code(), before),
    };
    let status = status.as_u16();
    let route = route.as_deref().unwrap_or("unmatched");
    if let Some(state) = state {
        state
            .metrics
            .observe(route, method, status, elapsed.as_secs_f64());
    }
    let latency_ms = request_id::millis(elapsed);
    // The relays' calls (a store batch, a receipt: several per message under load) at debug
    // unless they fail: at info they were four fifths of the API's log.
    if route.starts_with("/internal/") && status < 400 {
        tracing::debug!(target: request_id::ACCESS_TARGET, method, route, status, latency_ms, request_id = %id, "request");
    } else {
        tracing::info!(target: request_id::ACCESS_TARGET, method, route, status, latency_ms, request_id = %id, "request");
    }
    if let (Ok(response), Ok(value)) = (&mut result, header::HeaderValue::from_str(id.as_str())) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static(request_id::HEADER), value);
    }
    result
}

/// The method label: standard methods by name, anything else as `OTHER` (bounded label set).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Query-string `limit`: `default` when absent, at least 1, at most `max`.
pub(crate) fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default.min(max)),
        Some(n) if n < 1 => Err(ApiError::invalid("limit", "must be at least 1")),
        Some(n) => Ok(n.min(max)),
    }
}

#[cfg(test)]
mod tests;
