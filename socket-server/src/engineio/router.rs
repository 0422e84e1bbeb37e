//! Dispatch of one HTTP request: the fallback for other paths, validation of the Engine.IO query,
//! the handshake gate, then the transport handler.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};

use shared::net::OriginCheck;

use super::config::EngineConfig;
use super::engine::{Engine, EngineHandler};
use super::errors::{error_response, Body, HttpError};
use super::hooks::{not_found, parse_query, RequestInfo};
use super::session::Transport;
use super::{access, polling, websocket};

pub(crate) async fn route<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    request: Request<Incoming>,
    remote_addr: SocketAddr,
) -> Response<Body> {
    if let Some(refusal) = oversized(&engine.config, &request) {
        return refusal;
    }
    let path = request.uri().path();
    let base = engine.config.path.trim_end_matches('/');
    if path != engine.config.path && path != base {
        return match &engine.hooks.fallback {
            Some(fallback) => fallback.call(request, remote_addr).await,
            None => not_found(),
        };
    }
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let check = engine.config.allowed_origins.check(origin.as_deref(), host);
    let mut response = if request.method() == Method::OPTIONS {
        preflight(check)
    } else {
        engine_request(&engine, request, remote_addr, check).await
    };
    if let (OriginCheck::Allowed, Some(origin)) = (check, origin) {
        add_cors(&origin, &mut response);
    }
    response
}

async fn engine_request<H: EngineHandler>(
    engine: &Arc<Engine<H>>,
    mut request: Request<Incoming>,
    remote_addr: SocketAddr,
    origin: OriginCheck,
) -> Response<Body> {
    let query = parse_query(request.uri().query().unwrap_or(""));
    let transport = match query.get("transport").map(String::as_str) {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return HttpError::TransportUnknown.response(),
    };
    if query.get("EIO").map(String::as_str) != Some("4") {
        return HttpError::UnsupportedProtocolVersion.response();
    }

    let Some(sid) = query.get("sid") else {
        // A handshake: a new session unless refused.
        if engine.draining.is_cancelled() {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, 3, "Server shutting down");
        }
        if request.method() != Method::GET {
            return HttpError::BadHandshakeMethod.response();
        }
        if origin == OriginCheck::Refused {
            return HttpError::Forbidden.response();
        }
        let info = RequestInfo::copied_from(&request, remote_addr);
        if let Some(gate) = &engine.hooks.gate {
            if let Err(refusal) = gate.check(&info) {
                return refusal.response();
            }
        }
        return match transport {
            Transport::Polling => polling::handshake(engine, info).await,
            Transport::WebSocket => {
                match websocket::accept_response(request.method(), request.headers()) {
                    Ok(response) => {
                        let upgrade = hyper::upgrade::on(&mut request);
                        let task = websocket::run_direct(engine.clone(), upgrade, info);
                        engine.tasks.spawn(access::websocket(&request, task));
                        response
                    }
                    Err(error) => refused_upgrade(engine, &request, error),
                }
            }
        };
    };

    let Some(session) = engine.session(sid) else {
        return HttpError::UnknownSid.response();
    };
    match (transport, request.method()) {
        (Transport::Polling, &Method::GET) => polling::poll(engine, &session).await,
        (Transport::Polling, &Method::POST) => polling::post(engine, &session, request).await,
        (Transport::Polling, _) => HttpError::BadRequest.response(),
        (Transport::WebSocket, _) => {
            let response = match websocket::accept_response(request.method(), request.headers()) {
                Ok(response) => response,
                Err(error) => return refused_upgrade(engine, &request, error),
            };
            let can_upgrade = session.transport() == Transport::Polling && !session.is_closed();
            let upgrade = hyper::upgrade::on(&mut request);
            if !can_upgrade || session.upgrading.swap(true, Ordering::AcqRel) {
                // Already upgraded (or upgrading): like the reference server, complete this
                // WebSocket's handshake and close it at once, leaving the session alone. A 400
                // would surface as an error event in WebSocket clients.
                engine
                    .tasks
                    .spawn(websocket::refuse(engine.config.clone(), upgrade));
                return response;
            }
            let task = websocket::run_upgrade(engine.clone(), upgrade, session);
            engine.tasks.spawn(access::websocket(&request, task));
            response
        }
    }
}

/// The answer to a WebSocket request that is not a valid upgrade. A GET without `Upgrade:
/// websocket` is what a proxy that drops the upgrade headers forwards: every client then stays
/// on long-polling without an error anywhere, so it is logged, at once and then at most once a
/// minute.
fn refused_upgrade<H>(
    engine: &Engine<H>,
    request: &Request<Incoming>,
    error: HttpError,
) -> Response<Body> {
    if websocket::upgrade_dropped(request.method(), request.headers()) {
        let mut dropped = engine
            .upgrades_dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = dropped.occurred(tokio::time::Instant::now()) {
            tracing::warn!(
                dropped_since_last_said = count,
                "a WebSocket request came without `Upgrade: websocket`: a proxy in front of the \
                 relay drops the upgrade headers, so clients stay on long-polling (nginx: \
                 proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; \
                 proxy_set_header Connection \"upgrade\")"
            );
        }
    }
    error.response()
}

/// A request whose target or header count is past the configured limits, answered in the
/// error shape (what hyper's parser refuses itself gets its empty 414 / 431).
fn oversized<B>(config: &EngineConfig, request: &Request<B>) -> Option<Response<Body>> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > config.max_uri_len {
        return Some(limit_response(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "the request target is too long",
        ));
    }
    if request.headers().len() > config.max_headers {
        return Some(limit_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too_many_headers",
            "the request has too many header fields",
        ));
    }
    None
}

/// `{"error":{"code","message"}}` with `Connection: close` (the client sent too much already).
fn limit_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// Answers a CORS preflight: 204 with what may be sent for an allowed origin, 403 otherwise.
fn preflight(origin: OriginCheck) -> Response<Body> {
    if !matches!(origin, OriginCheck::Allowed | OriginCheck::SameOrigin) {
        return HttpError::Forbidden.response();
    }
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        header::HeaderValue::from_static("3600"),
    );
    response
}

/// CORS headers for an allowed origin (every answer to it: handshake, polls, errors).
fn add_cors(origin: &str, response: &mut Response<Body>) {
    if let Ok(value) = header::HeaderValue::from_str(origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::HeaderValue::from_static("true"),
        );
        h.insert(header::VARY, header::HeaderValue::from_static("Origin"));
    }
}
