//! Cross-origin browser access (`CORS_ALLOWED_ORIGINS`, the same list the relays read): an
//! allowed origin gets CORS answers on every route, its preflights included; an origin off the
//! list gets 403 `origin_not_allowed` in the error shape, preflight or not. Requests without an
//! `Origin` header (node, mobile apps, curl) and same-origin pages are never refused for their
//! origin; the token is what authenticates them.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};
use shared::errors::ErrorCode;
use shared::net::{AllowedOrigins, OriginCheck};

use crate::error::ApiError;

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "3600";
/// The request headers a page may send: besides the usual, a download's `Range` and
/// `If-None-Match` (the API keeps no modification date: `If-Modified-Since` is not read).
const ALLOWED_HEADERS: &str =
    "authorization, content-type, accept, x-request-id, range, if-none-match";
/// The response headers a page may read: `Retry-After`, the request id, what a download answers
/// with (`Content-Length` is safelisted by browsers of today, named for older ones), and the
/// conversation list's `Link` to its next page.
const EXPOSED: &str = "retry-after, x-request-id, etag, content-range, accept-ranges, \
     content-length, content-disposition, link";

/// The allowed origins, as app data (`App::app_data`) read by [`cors`].
#[derive(Debug, Clone, Default)]
pub struct Origins(pub Arc<AllowedOrigins>);

impl Origins {
    pub fn data(origins: AllowedOrigins) -> web::Data<Origins> {
        web::Data::new(Origins(Arc::new(origins)))
    }
}

/// The middleware (`middleware::from_fn(cors)`); without [`Origins`] app data no browser origin
/// is allowed.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let origin = header_str(&req, header::ORIGIN).map(str::to_owned);
    let none = AllowedOrigins::default();
    let allowed = req
        .app_data::<web::Data<Origins>>()
        .map_or(&none, |origins| &origins.0);
    let check = allowed.check(origin.as_deref(), header_str(&req, header::HOST));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match (check, origin) {
        (OriginCheck::Refused, Some(origin)) => {
            tracing::info!(
                origin,
                "refused a browser request from an origin off the list"
            );
            let refusal = ApiError::new(
                ErrorCode::OriginNotAllowed,
                format!(
                    "the origin {origin} may not call this API from a browser (CORS_ALLOWED_ORIGINS)"
                ),
            );
            Ok(req.into_response(refusal.error_response()))
        }
        (OriginCheck::Allowed, Some(origin)) if preflight => {
            let mut answer = HttpResponse::NoContent();
            answer
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, POST"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
                .insert_header((header::VARY, "Origin"));
            Ok(req.into_response(answer.finish()))
        }
        (OriginCheck::Allowed, Some(origin)) => {
            let mut response = next.call(req).await?.map_into_boxed_body();
            let h = response.headers_mut();
            if let Ok(value) = header::HeaderValue::from_str(&origin) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                header::HeaderValue::from_static(EXPOSED),
            );
            h.append(header::VARY, header::HeaderValue::from_static("Origin"));
            Ok(response)
        }
        _ => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

fn header_str(req: &ServiceRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposed_headers_name_the_request_id_header() {
        assert!(EXPOSED.contains(shared::request_id::HEADER));
    }
}
