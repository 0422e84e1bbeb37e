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
use shared::bus::redis::RedisBus;
use shared::bus::{subscriber, Bus, BusMessage, Keys};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::chat::{
    api::ApiClient, cache, dispatch, limits::RateLimiter, metrics::Metrics, presence,
    registry::Registry, ChatHandler, ChatState,
};
use crate::engineio::{self, Body, EngineConfig, FallbackFuture, Hooks, Refusal, RequestInfo};
use crate::settings::Settings;
use crate::socketio::{SocketIo, SocketIoConfig};

pub struct Application {
    port: u16,
    listener: TcpListener,
    endpoint: engineio::Endpoint<SocketIo>,
    state: Arc<ChatState>,
}

impl Application {
    /// Connect to Redis and bind the port. Fails with the reason when Redis cannot be reached.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let keys = Keys::new(&settings.redis.prefix);
        let bus = RedisBus::connect(&settings.redis.url, keys.clone())
            .await
            .context("connecting to Redis (REDIS_URL)")?;
        let (subscriber, received) = subscriber::redis(bus.client().clone(), keys);
        Self::build_with(settings, Arc::new(bus), subscriber, received).await
    }

    /// Build on a given bus and subscriber (the all-in-one binary passes in-process ones).
    pub async fn build_with(
        settings: Settings,
        bus: Arc<dyn Bus>,
        subscriber: subscriber::Subscriber,
        received: mpsc::Receiver<BusMessage>,
    ) -> anyhow::Result<Self> {
        let limits = &settings.limits;
        let api = ApiClient::new(
            &settings.api.url,
            Duration::from_millis(settings.api.timeout_ms),
            limits.store_attempts,
            Duration::from_millis(limits.store_backoff_ms),
        )
        .context("building the API client")?;
        let metrics = Metrics::default();
        let state = Arc::new(ChatState {
            keys: JwtKeys::new(&settings.jwt).map_err(anyhow::Error::msg)?,
            bus,
            subscriber,
            registry: Registry::new(metrics.outbox_drops.clone()),
            api,
            origin: format!("relay-{}", uuid::Uuid::new_v4()),
            members: cache::MembershipCache::new(Duration::from_secs(limits.membership_cache_secs)),
            relayed: cache::RecentlyRelayed::default(),
            limits: limits.clone(),
            metrics,
            presence: presence::Presence::new(settings.presence.clone()),
            sends: RateLimiter::new(limits.sends_per_sec, limits.sends_burst),
            typing: RateLimiter::new(limits.typing_per_sec, limits.typing_per_sec),
            in_flight: Default::default(),
        });
        tokio::spawn(dispatch::run(state.clone(), received));
        tokio::spawn(presence::refresh_forever(Arc::downgrade(&state)));

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
            allowed_origins: settings.socket.allowed_origins.clone(),
            ..EngineConfig::default()
        };
        let per_ip = RateLimiter::new(
            limits.connects_per_ip_per_sec,
            limits.connects_per_ip_per_sec,
        );
        let gate = move |request: &RequestInfo| -> Result<(), Refusal> {
            if per_ip.allow(request.remote_addr.ip()) {
                Ok(())
            } else {
                Err(Refusal::too_many_requests())
            }
        };
        // The fallback needs the endpoint (for its session count), which needs the hooks: close
        // the loop through a cell filled right after.
        let sessions: Arc<std::sync::OnceLock<engineio::Endpoint<SocketIo>>> = Arc::default();
        let hooks = Hooks::default().with_gate(gate).with_fallback({
            let sessions = sessions.clone();
            let state = state.clone();
            move |request: Request<Incoming>, _addr: SocketAddr| -> FallbackFuture {
                let count = sessions.get().map_or(0, engineio::Endpoint::session_count);
                let (users, sockets) = state.registry.counts();
                state
                    .metrics
                    .subscriber_errors
                    .catch_up(state.subscriber.errors());
                let metrics = state.metrics.render(count, users, sockets);
                let bus = state.bus.clone();
                let path = request.uri().path().to_owned();
                Box::pin(async move { ops(&path, metrics, bus).await })
            }
        });
        let endpoint = engineio::Endpoint::new(config, Arc::new(io), hooks);
        let _ = sessions.set(endpoint.clone());
        tracing::info!(port, "socket-server listening");
        Ok(Self {
            port,
            listener,
            endpoint,
            state,
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
        let drain = |budget: Duration| async move {
            let left = state.in_flight.drain(budget).await;
            if left > 0 {
                tracing::warn!(left, "shutting down with sends not yet stored");
            }
        };
        engineio::serve_draining(self.listener, self.endpoint, shutdown, drain).await
    }
}

/// `/health` (the relay and its Redis) and `/metrics`.
async fn ops(path: &str, metrics: String, bus: Arc<dyn Bus>) -> Response<Body> {
    let (status, content_type, body) = match path {
        "/health" => match bus.ping().await {
            Ok(()) => (
                StatusCode::OK,
                "application/json",
                r#"{"status":"ok","redis":"ok"}"#.to_owned(),
            ),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                r#"{"status":"degraded","redis":"unreachable"}"#.to_owned(),
            ),
        },
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
