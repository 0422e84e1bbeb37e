//! Building and running the relay: connect to Redis and bind in `build` (tests ask for port 0
//! and read the real port back), serve in `run_until_stopped`, which drains when `shutdown`
//! resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use shared::auth::JwtKeys;
use shared::bus::publisher::BusPublisher;
use shared::bus::redis::RedisBus;
use shared::bus::{subscriber, Bus, BusMessage, Keys};
use shared::limits::RateLimiter;
use shared::port::RelayPort;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::{
    cache, dispatch, membership::MembershipView, metrics::Metrics, port_http::HttpPort, presence,
    registry::Registry, roster, sessions, store, ChatHandler, ChatState,
};
use crate::engineio::{self, Body, EngineConfig, FallbackFuture, Hooks, Refusal, RequestInfo};
use crate::settings::Settings;
use crate::socketio::{SocketIo, SocketIoConfig};

/// Events waiting for the bus publisher; beyond, they are dropped and counted.
const PUBLISH_QUEUE: usize = 65_536;

pub struct Application {
    port: u16,
    listener: TcpListener,
    endpoint: engineio::Endpoint<SocketIo>,
    state: Arc<ChatState>,
    /// The bus publisher's task.
    publishing: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Connect to Redis and bind the port; the API is reached over HTTP at `api.url`. Fails
    /// with the reason when Redis cannot be reached.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let keys = Keys::new(&settings.redis.prefix);
        let bus = RedisBus::connect(&settings.redis.url, keys.clone())
            .await
            .context("connecting to Redis (REDIS_URL)")?;
        let (subscriber, received) = bus.subscribe();
        let port = HttpPort::new(
            &settings.api.url,
            Duration::from_millis(settings.api.timeout_ms),
            JwtKeys::new(&settings.jwt).map_err(anyhow::Error::msg)?,
        )
        .context("building the API client (API_URL)")?;
        let port = Arc::new(port);
        // Not awaited: the relay serves without the API (live delivery needs none of it).
        tokio::spawn(HttpPort::probe_until_answered(Arc::downgrade(&port)));
        Self::build_with(settings, Arc::new(bus), subscriber, received, port).await
    }

    /// Build on a given bus, subscriber and API port (the all-in-one binary passes in-process
    /// ones).
    pub async fn build_with(
        settings: Settings,
        bus: Arc<dyn Bus>,
        subscriber: subscriber::Subscriber,
        received: mpsc::Receiver<BusMessage>,
        api: Arc<dyn RelayPort>,
    ) -> anyhow::Result<Self> {
        let limits = &settings.limits;
        let keys = JwtKeys::new(&settings.jwt).map_err(anyhow::Error::msg)?;
        let metrics = Metrics::default();
        let origin = format!("relay-{}", uuid::Uuid::new_v4());
        // Before serving: every live relay has seen this one, so publishes to its users.
        let roster = roster::Roster::join(bus.as_ref(), &origin).await;
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        // Owned here, ended at the end of `run_until_stopped` (it also ends by itself once the
        // state, its last handle, is dropped).
        let (publisher, publishing) =
            BusPublisher::start(bus.clone(), origin.clone(), PUBLISH_QUEUE);
        let state = Arc::new_cyclic(|weak| ChatState {
            keys,
            bus,
            publisher,
            subscriber,
            registry: Registry::new(metrics.outbox_drops.clone()),
            port: api.clone(),
            origin,
            view: MembershipView::default(),
            relayed: cache::RecentlyRelayed::default(),
            sessions: cache::SessionCache::new(Duration::from_secs(limits.session_cache_secs)),
            limits: limits.clone(),
            metrics,
            presence: presence::Presence::new(settings.presence.clone()),
            roster,
            sends: RateLimiter::new(limits.sends_per_sec, limits.sends_burst),
            typing: RateLimiter::new(limits.typing_per_sec, limits.typing_per_sec),
            admission: store::Admission::default(),
            store: store::StoreLanes::start(
                limits.store_lanes,
                limits.store_batch_max,
                Duration::from_millis(limits.store_interval_ms),
                weak.clone(),
                &tasks,
                &stop,
            ),
            tasks: tasks.clone(),
            expiries: Arc::default(),
            stop: stop.clone(),
            document_receipts: crate::chat::receipts::DocumentReceipts::new(api, tasks.clone()),
        });
        tasks.spawn(dispatch::run(
            Arc::downgrade(&state),
            received,
            stop.clone(),
        ));
        tasks.spawn(presence::refresh_forever(
            Arc::downgrade(&state),
            stop.clone(),
        ));
        tasks.spawn(roster::refresh_forever(
            Arc::downgrade(&state),
            stop.clone(),
        ));
        tasks.spawn(sessions::run(Arc::downgrade(&state), stop));

        let listener = TcpListener::bind((settings.socket.host.as_str(), settings.socket.port))
            .await
            .with_context(|| {
                format!(
                    "binding the relay port {}:{} (SOCKET_PORT)",
                    settings.socket.host, settings.socket.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let io = SocketIo::new(SocketIoConfig {
            connect_timeout: Duration::from_millis(settings.socket.connect_timeout_ms),
            ..SocketIoConfig::default()
        })
        .namespace("/", ChatHandler::new(state.clone()));
        let config = EngineConfig {
            shutdown_timeout: Duration::from_secs(settings.socket.shutdown_timeout_secs),
            outbox_capacity: settings.socket.outbox_capacity,
            allowed_origins: allowed_origins(&settings),
            max_uri_len: settings.socket.max_uri_bytes,
            max_headers: settings.socket.max_headers,
            ..EngineConfig::default()
        };
        let per_ip = RateLimiter::new(
            limits.connects_per_ip_per_sec,
            limits.connects_per_ip_per_sec,
        );
        let proxies = settings.socket.trusted_proxies.clone();
        let gate = move |request: &RequestInfo| -> Result<(), Refusal> {
            let headers = &request.headers;
            let client = proxies.client_ip(
                request.remote_addr.ip(),
                headers
                    .get_all("forwarded")
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
                headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            per_ip
                .check(client)
                .map_err(|wait| Refusal::too_many_requests().with_retry_after(wait))
        };
        // The fallback needs the endpoint (for its session count), which needs the hooks: close
        // the loop through a cell filled right after, with a weak handle (a strong one kept the
        // endpoint, the chat state and the bus publisher alive past shutdown, which then waited
        // out the publisher's grace).
        let sessions: Arc<std::sync::OnceLock<engineio::WeakEndpoint<SocketIo>>> = Arc::default();
        let hooks = Hooks::default().with_gate(gate).with_fallback({
            let sessions = sessions.clone();
            let state = state.clone();
            move |request: Request<Incoming>, _addr: SocketAddr| -> FallbackFuture {
                let count = sessions
                    .get()
                    .map_or(0, engineio::WeakEndpoint::session_count);
                let (users, sockets) = state.registry.counts();
                state
                    .metrics
                    .subscriber_errors
                    .catch_up(state.subscriber.errors());
                let bus = state.publisher.counters();
                state.metrics.bus_published.catch_up(bus.published());
                state.metrics.bus_dropped.catch_up(bus.dropped());
                state.metrics.bus_up.set(i64::from(bus.bus_up()));
                let api_up = state.port.reachable();
                state.metrics.api_up.set(api_up.map_or(-1, i64::from));
                state.metrics.peers.set(state.roster.peers());
                state
                    .metrics
                    .sends_in_flight
                    .set(state.admission.in_flight() as i64);
                let metrics = state.metrics.render(count, users, sockets);
                let health = Health {
                    bus_up: bus.bus_up(),
                    api_up,
                    draining: state.admission.closing(),
                };
                let path = request.uri().path().to_owned();
                Box::pin(async move { ops(&path, metrics, health) })
            }
        });
        let endpoint = engineio::Endpoint::new(config, Arc::new(io), hooks);
        let _ = sessions.set(endpoint.downgrade());
        tracing::info!(port, "socket-server listening");
        Ok(Self {
            port,
            listener,
            endpoint,
            state,
            publishing,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until `shutdown` resolves; then, within one `socket.shutdown_timeout_secs`:
    /// refuse new connections, handshakes and sends at once; wait for the sends already queued
    /// to be stored and acked (their sockets still open); then tell every client to reconnect
    /// elsewhere (`server shutting down`). See [`engineio::serve_draining`].
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let state = self.state;
        let draining = state.clone();
        let drain = |budget: Duration| async move {
            let left = draining.admission.drain(budget).await;
            if left > 0 {
                tracing::warn!(left, "shutting down with sends not yet stored");
            }
        };
        let served = engineio::serve_draining(self.listener, self.endpoint, shutdown, drain).await;
        // The chat layer's tasks end with the relay.
        state.stop.cancel();
        state.tasks.close();
        if tokio::time::timeout(TASKS_GRACE, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(left = state.tasks.len(), "chat tasks still running at exit");
        }
        // The publisher sends what is queued once its last handle (in the state) is gone.
        drop(state);
        let mut publishing = self.publishing;
        if tokio::time::timeout(TASKS_GRACE, &mut publishing)
            .await
            .is_err()
        {
            tracing::warn!("the bus publisher had not sent everything queued at exit");
            publishing.abort();
        }
        served
    }
}

/// How long the chat layer's tasks get to end after the connections are closed.
const TASKS_GRACE: Duration = Duration::from_secs(2);

/// What `/health` says: the bus state the publisher last saw, whether the API answered the
/// relay's last call (`None`: not known yet, or in this process), and whether the relay is
/// draining (SIGTERM received).
#[derive(Debug, Clone, Copy)]
struct Health {
    bus_up: bool,
    api_up: Option<bool>,
    draining: bool,
}

/// `/health` (answers at once, whatever Redis does; 503 while draining, so that a balancer
/// reusing a kept-alive connection also takes the relay out) and `/metrics`.
fn ops(path: &str, metrics: String, health: Health) -> Response<Body> {
    let (status, content_type, body) = match path {
        "/health" => (
            if health.draining {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            },
            "application/json",
            if health.draining {
                r#"{"status":"draining"}"#.to_owned()
            } else {
                let bus = if health.bus_up { "ok" } else { "degraded" };
                match health.api_up {
                    None => format!(r#"{{"status":"ok","bus":"{bus}"}}"#),
                    Some(up) => {
                        let api = if up { "ok" } else { "unreachable" };
                        format!(r#"{{"status":"ok","bus":"{bus}","api":"{api}"}}"#)
                    }
                }
            },
        ),
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":{"code":"not_found","message":"no such path"}}"#.to_owned(),
        ),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// The browser origins from `CORS_ALLOWED_ORIGINS` (none when unset), said once at start-up.
fn allowed_origins(settings: &Settings) -> shared::net::AllowedOrigins {
    let origins = settings.cors.allowed_origins.clone().unwrap_or_default();
    origins.announce("the relay");
    origins
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[test]
    fn health_is_503_while_draining_and_names_the_bus_and_the_api_otherwise() {
        let answer = |bus_up, api_up, draining| {
            let health = Health {
                bus_up,
                api_up,
                draining,
            };
            let response = ops("/health", String::new(), health);
            let status = response.status();
            let body = futures::executor::block_on(response.into_body().collect())
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            (status, body)
        };
        let ok = StatusCode::OK;
        let body = |s: &str| s.to_owned();
        assert_eq!(
            answer(true, None, false),
            (ok, body(r#"{"status":"ok","bus":"ok"}"#))
        );
        assert_eq!(
            answer(false, Some(true), false),
            (ok, body(r#"{"status":"ok","bus":"degraded","api":"ok"}"#))
        );
        // The relay still relays live without the API: it stays in rotation.
        assert_eq!(
            answer(true, Some(false), false),
            (
                ok,
                body(r#"{"status":"ok","bus":"ok","api":"unreachable"}"#)
            )
        );
        assert_eq!(
            answer(true, Some(true), true),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                body(r#"{"status":"draining"}"#)
            )
        );
    }
}
