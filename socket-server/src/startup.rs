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
    api::ApiClient, cache, dispatch, metrics::Metrics, registry::Registry, ChatHandler, ChatState,
};
use crate::engineio::{self, Body, EngineConfig, FallbackFuture, Hooks};
use crate::settings::Settings;
use crate::socketio::{SocketIo, SocketIoConfig};

pub struct Application {
    port: u16,
    listener: TcpListener,
    endpoint: engineio::Endpoint<SocketIo>,
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
        let state = Arc::new(ChatState {
            keys: JwtKeys::new(&settings.jwt).map_err(anyhow::Error::msg)?,
            bus,
            subscriber,
            registry: Registry::default(),
            api,
            origin: format!("relay-{}", uuid::Uuid::new_v4()),
            members: cache::MembershipCache::new(Duration::from_secs(limits.membership_cache_secs)),
            relayed: cache::RecentlyRelayed::default(),
            limits: limits.clone(),
            metrics: Metrics::default(),
        });
        tokio::spawn(dispatch::run(state.clone(), received));

        let listener = TcpListener::bind((settings.socket.host.as_str(), settings.socket.port))
            .await
            .with_context(|| {
                format!(
                    "binding the relay port {}:{} (SOCKET_PORT)",
                    settings.socket.host, settings.socket.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let io = SocketIo::new(SocketIoConfig::default())
            .namespace("/", ChatHandler::new(state.clone()));
        let config = EngineConfig {
            shutdown_timeout: Duration::from_secs(settings.socket.shutdown_timeout_secs),
            ..EngineConfig::default()
        };
        // The fallback needs the endpoint (for its session count), which needs the hooks: close
        // the loop through a cell filled right after.
        let sessions: Arc<std::sync::OnceLock<engineio::Endpoint<SocketIo>>> = Arc::default();
        let hooks = Hooks::default().with_fallback({
            let sessions = sessions.clone();
            let state = state.clone();
            move |request: Request<Incoming>, _addr: SocketAddr| -> FallbackFuture {
                let count = sessions.get().map_or(0, engineio::Endpoint::session_count);
                let (users, sockets) = state.registry.counts();
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
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until `shutdown` resolves; then stop accepting, tell every client to reconnect
    /// elsewhere (`server shutting down`) and return within `socket.shutdown_timeout_secs`.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        engineio::serve_endpoint(self.listener, self.endpoint, shutdown).await
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
