//! Dispatch of one HTTP request: the fallback for other paths, validation of the Engine.IO query,
//! the handshake gate, then the transport handler.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};

use super::engine::{Engine, EngineHandler};
use super::errors::{error_response, Body, HttpError};
use super::hooks::{not_found, parse_query, RequestInfo};
use super::session::Transport;
use super::{polling, websocket};

pub(crate) async fn route<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    request: Request<Incoming>,
    remote_addr: SocketAddr,
) -> Response<Body> {
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
    let mut response = if request.method() == Method::OPTIONS {
        preflight(&engine, origin.as_deref())
    } else {
        engine_request(&engine, request, remote_addr, origin.as_deref()).await
    };
    add_cors(&engine, origin.as_deref(), &mut response);
    response
}

async fn engine_request<H: EngineHandler>(
    engine: &Arc<Engine<H>>,
    mut request: Request<Incoming>,
    remote_addr: SocketAddr,
    origin: Option<&str>,
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
        if !engine.config.origin_allowed(origin) {
            return HttpError::Forbidden.response();
        }
        let info = RequestInfo {
            remote_addr,
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        };
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
                        engine
                            .tasks
                            .spawn(websocket::run_direct(engine.clone(), upgrade, info));
                        response
                    }
                    Err(error) => error.response(),
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
                Err(error) => return error.response(),
            };
            let can_upgrade = session.transport() == Transport::Polling && !session.is_closed();
            if !can_upgrade || session.upgrading.swap(true, Ordering::AcqRel) {
                return HttpError::BadRequest.response();
            }
            let upgrade = hyper::upgrade::on(&mut request);
            engine
                .tasks
                .spawn(websocket::run_upgrade(engine.clone(), upgrade, session));
            response
        }
    }
}

/// Answers a CORS preflight for an allowed origin.
fn preflight<H>(engine: &Engine<H>, origin: Option<&str>) -> Response<Body> {
    if engine.config.allowed_origins.is_empty() || !engine.config.origin_allowed(origin) {
        return HttpError::BadRequest.response();
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
    response
}

/// CORS headers for origins on the allowlist (none when the list is empty: same-origin only).
fn add_cors<H>(engine: &Engine<H>, origin: Option<&str>, response: &mut Response<Body>) {
    let Some(origin) = origin else { return };
    if engine.config.allowed_origins.is_empty() || !engine.config.origin_allowed(Some(origin)) {
        return;
    }
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
