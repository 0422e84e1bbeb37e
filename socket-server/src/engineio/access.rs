//! Request ids and the access log of the HTTP layer.
//!
//! Every request gets an id (the incoming `x-request-id` when valid, else a new one), returned
//! in the `x-request-id` header and carried by a `request` span around its handling, so every
//! log line of the request has it; and one access-log line (target `parley::access`) when it is
//! answered: method, route, status, latency, id. Polling requests of an open session (`sid` in
//! the query) are logged at debug, as every client makes one every few seconds; everything
//! else, and any polling request answered with an error, at info. A WebSocket logs its upgrade
//! (status 101) like any request, then one line when it closes, with how long it was open,
//! inside the same span — never one line per frame.
//!
//! The route is a pattern, never the raw path and query: the Engine.IO path with its transport
//! (`/socket.io/?transport=polling&sid={sid}`, `/socket.io/?transport=websocket`, …); outside it,
//! the path the fallback answered (`/health`, `/metrics`) or `unmatched` when it answered 404.

use std::future::Future;

use futures::FutureExt as _;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use shared::request_id::{self, millis, RequestId, ACCESS_TARGET};
use tokio::time::Instant;
use tracing::{Instrument, Span};

use super::config::EngineConfig;
use super::errors::Body;
use super::hooks::parse_query;

/// One request being answered, from its arrival to its access-log line.
pub(crate) struct Access {
    id: RequestId,
    started: Instant,
    method: Method,
    route: Route,
    span: Span,
}

/// What the access log names a request by.
enum Route {
    /// Under the Engine.IO path: the pattern, and whether it is a poll of an open session.
    Engine { pattern: String, poll: bool },
    /// Outside it (the fallback): the path, named only if the fallback served it.
    Other(String),
}

/// What a WebSocket's task needs to log its close, left in the request's extensions for the
/// router, which spawns that task.
#[derive(Clone)]
struct Opened {
    id: RequestId,
    route: String,
    started: Instant,
    span: Span,
}

impl Access {
    /// Starts the request's record: its id, its route and its span (also left in the
    /// request's extensions for [`websocket`]).
    pub(crate) fn start<B>(config: &EngineConfig, request: &mut Request<B>) -> Self {
        let id = RequestId::from_header(
            request
                .headers()
                .get(request_id::HEADER)
                .map(HeaderValue::as_bytes),
        );
        let route = route(config, request);
        let span = tracing::info_span!("request", request_id = %id);
        let started = Instant::now();
        if let Route::Engine { pattern, .. } = &route {
            request.extensions_mut().insert(Opened {
                id: id.clone(),
                route: pattern.clone(),
                started,
                span: span.clone(),
            });
        }
        Self {
            id,
            started,
            method: request.method().clone(),
            route,
            span,
        }
    }

    /// The span every log line of the request is written in.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// Adds `x-request-id` to the response and writes the access-log line.
    pub(crate) fn finish(self, response: &mut Response<Body>) {
        if let Ok(value) = HeaderValue::from_str(self.id.as_str()) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(request_id::HEADER), value);
        }
        let status = response.status();
        let (route, quiet) = match &self.route {
            Route::Engine { pattern, poll } => (pattern.as_str(), *poll && status.as_u16() < 400),
            Route::Other(_) if status == StatusCode::NOT_FOUND => ("unmatched", false),
            Route::Other(path) => (path.as_str(), false),
        };
        let method = self.method.as_str();
        let status = status.as_u16();
        let latency_ms = millis(self.started.elapsed());
        let request_id = self.id.as_str();
        if quiet {
            tracing::debug!(
                target: ACCESS_TARGET,
                method,
                route,
                status,
                latency_ms,
                request_id,
                "request"
            );
        } else {
            tracing::info!(
                target: ACCESS_TARGET,
                method,
                route,
                status,
                latency_ms,
                request_id,
                "request"
            );
        }
    }
}

/// The Engine.IO route pattern of a request, or its path when it is not under the Engine.IO
/// path.
fn route<B>(config: &EngineConfig, request: &Request<B>) -> Route {
    let path = request.uri().path();
    let base = config.path.trim_end_matches('/');
    if path != config.path && path != base {
        return Route::Other(path.to_owned());
    }
    let query = parse_query(request.uri().query().unwrap_or(""));
    let transport = match query.get("transport").map(String::as_str) {
        Some("polling") => "polling",
        Some("websocket") => "websocket",
        _ => {
            return Route::Engine {
                pattern: config.path.clone(),
                poll: false,
            }
        }
    };
    let session = query.contains_key("sid");
    let sid = if session { "&sid={sid}" } else { "" };
    Route::Engine {
        pattern: format!("{}?transport={transport}{sid}", config.path),
        poll: session && transport == "polling",
    }
}

/// A WebSocket connection's task (spawned by the router after answering the upgrade of
/// `request`), run inside the request's span and followed by one access-log line when it ends:
/// `websocket closed`, with how long the connection was open and why it closed (the task's
/// answer: a close reason, or why the upgrade did not happen).
pub(crate) fn websocket<B, F>(request: &Request<B>, task: F) -> impl Future<Output = ()>
where
    F: Future<Output = &'static str>,
{
    let opened = request.extensions().get::<Opened>().cloned();
    let span = opened.as_ref().map_or_else(Span::none, |o| o.span.clone());
    // `map`, not an `async` block awaiting `task`: the block would hold `task` twice (as its
    // captured argument and as the future it awaits) for the connection's whole life.
    task.map(move |reason| {
        if let Some(opened) = opened {
            tracing::info!(
                target: ACCESS_TARGET,
                route = opened.route.as_str(),
                duration_ms = millis(opened.started.elapsed()),
                request_id = opened.id.as_str(),
                reason,
                "websocket closed"
            );
        }
    })
    .instrument(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(target: &str) -> (String, bool) {
        let request = Request::get(target).body(()).unwrap();
        match route(&EngineConfig::default(), &request) {
            Route::Engine { pattern, poll } => (pattern, poll),
            Route::Other(path) => (path, false),
        }
    }

    #[test]
    fn routes_are_patterns_without_sids_or_other_query_values() {
        assert_eq!(
            route_of("/socket.io/?EIO=4&transport=polling&t=abc"),
            ("/socket.io/?transport=polling".into(), false)
        );
        assert_eq!(
            route_of("/socket.io/?EIO=4&transport=polling&sid=s3cr3t&t=x"),
            ("/socket.io/?transport=polling&sid={sid}".into(), true)
        );
        assert_eq!(
            route_of("/socket.io?EIO=4&transport=websocket&sid=s3cr3t"),
            ("/socket.io/?transport=websocket&sid={sid}".into(), false)
        );
        assert_eq!(
            route_of("/socket.io/?transport=carrier-pigeon"),
            ("/socket.io/".into(), false)
        );
        assert_eq!(route_of("/health"), ("/health".into(), false));
    }

    #[test]
    fn the_response_carries_the_incoming_id_or_a_new_one() {
        let config = EngineConfig::default();
        let mut request = Request::get("/health")
            .header("x-request-id", "from-the-balancer")
            .body(())
            .unwrap();
        let mut response = Response::new(Body::default());
        Access::start(&config, &mut request).finish(&mut response);
        assert_eq!(response.headers()["x-request-id"], "from-the-balancer");

        let mut request = Request::get("/health")
            .header("x-request-id", "not valid")
            .body(())
            .unwrap();
        let mut response = Response::new(Body::default());
        Access::start(&config, &mut request).finish(&mut response);
        let generated = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    }
}
