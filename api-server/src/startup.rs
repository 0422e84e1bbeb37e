//! Building and running the API: bind in `build` (so tests can ask for port 0 and read the real
//! port back), serve in `run_until_stopped`, which stops gracefully when `shutdown` resolves.

use crate::auth::throttle::LoginThrottle;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Store;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use shared::auth::JwtKeys;
use shared::bus::{redis::RedisBus, Bus, Keys};
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How many message stores (a send, or a batch) may hold a database connection at once: all
/// but two of the pool, so that the relays' look-ups (memberships, a conversation's members,
/// sessions) and sync never queue behind stores.
fn writers(pool_size: usize) -> usize {
    pool_size.saturating_sub(2).max(1)
}

/// How long the bus publisher gets to send what is queued at shutdown.
const PUBLISHER_GRACE: Duration = Duration::from_secs(2);

/// Services a host mounts next to the API (the all-in-one serves its web app with it). They are
/// registered after every API route, so the API's paths keep priority, and before the JSON 404.
pub type ExtraServices = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

pub struct Application {
    port: u16,
    server: Server,
    /// What the handlers share; the in-process relay port serves from it too.
    state: AppState,
    /// The bus publisher's task: it ends once the last handle on the state is gone.
    publishing: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Open the store named by DATABASE_URL (PostgreSQL or SQLite; migrations run), connect to
    /// Redis, bind
    /// the port. Fails with the reason when a dependency cannot be reached.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = crate::store::open(&settings.database).await?;
        let bus = RedisBus::connect(&settings.redis.url, Keys::new(&settings.redis.prefix))
            .await
            .with_context(|| "connecting to Redis (REDIS_URL)")?;
        Self::build_with(settings, store, Arc::new(bus)).await
    }

    /// Build on a given store and bus (the all-in-one binary passes its embedded ones).
    pub async fn build_with(
        settings: Settings,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
    ) -> anyhow::Result<Self> {
        Self::build_with_extra(settings, store, bus, None).await
    }

    /// [`Self::build_with`], plus the host's own services ([`ExtraServices`]).
    pub async fn build_with_extra(
        settings: Settings,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        extra: Option<ExtraServices>,
    ) -> anyhow::Result<Self> {
        let keys = JwtKeys::new(&settings.jwt).map_err(anyhow::Error::msg)?;
        let metrics = Metrics::new().context("registering metrics")?;
        let publisher = Publisher::new(bus.clone(), &metrics);
        let attachments =
            crate::attachments::Attachments::open(&settings.attachments, &settings.jwt.secret)
                .context("opening the attachments storage (ATTACHMENTS_URL)")?;
        crate::service::attachments::spawn_gc(&store, &attachments);
        crate::service::sessions::spawn_prune(&store);
        crate::service::spawn_close_idle(&store);
        let state = AppState {
            attachments,
            store,
            bus,
            keys,
            limits: settings.limits.clone(),
            publisher,
            metrics,
            writers: Arc::new(tokio::sync::Semaphore::new(writers(
                settings.database.pool_size,
            ))),
            sends: Arc::new(shared::limits::RateLimiter::new(
                settings.limits.sends_per_sec,
                settings.limits.sends_burst,
            )),
            conversations: Arc::new(shared::limits::RateLimiter::per_minute(
                settings.limits.conversations_per_minute,
                settings.limits.conversations_burst,
            )),
            login_throttle: Arc::new(
                LoginThrottle::new(
                    settings.limits.login_failures_per_window,
                    Duration::from_secs(settings.limits.login_window_secs),
                )
                .with_account_limit(settings.limits.login_failures_per_account)
                .with_ip_limit(settings.limits.login_failures_per_ip),
            ),
            registrations: Arc::new(LoginThrottle::registrations(
                settings.limits.registrations_per_ip,
                Duration::from_secs(settings.limits.login_window_secs),
            )),
            trusted_proxies: Arc::new(settings.api.trusted_proxies.clone()),
        };
        let listener = TcpListener::bind((settings.api.host.as_str(), settings.api.port))
            .with_context(|| {
                format!(
                    "binding the API port {}:{} (API_PORT)",
                    settings.api.host, settings.api.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let origins = settings.cors.allowed_origins.clone().unwrap_or_default();
        origins.announce("the API");
        let origins = routes::cors::Origins::data(origins);
        let body_timeout =
            routes::deadline::BodyTimeout(Duration::from_millis(settings.api.body_timeout_ms));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(|cfg| routes::configure(cfg, &data.limits))
                .configure(|cfg| {
                    if let Some(extra) = &extra {
                        extra(cfg);
                    }
                })
                .default_service(web::to(routes::not_found))
                .app_data(body_timeout)
                .app_data(origins.clone())
                .wrap(actix_web::middleware::from_fn(
                    routes::deadline::body_deadline,
                ))
                .wrap(actix_web::middleware::from_fn(routes::cors::cors))
                .wrap(actix_web::middleware::from_fn(routes::observe))
        })
        .listen(listener)?
        .keep_alive(Duration::from_secs(settings.api.keep_alive_secs))
        .client_request_timeout(shared::port::API_REQUEST_HEAD_TIMEOUT)
        .disable_signals()
        .shutdown_timeout(settings.api.shutdown_timeout_secs)
        .run();
        tracing::info!(port, "api-server listening");
        let publishing = state.publisher.take_task();
        Ok(Self {
            port,
            server,
            state,
            publishing,
        })
    }

    /// The relay port served in process (`crate::port::InProcessPort`): the all-in-one binary
    /// hands it to its relay, which then stores and reads through the API's own functions,
    /// with no HTTP request.
    pub fn relay_port(&self) -> Arc<dyn shared::port::RelayPort> {
        Arc::new(crate::port::InProcessPort::new(self.state.clone()))
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until `shutdown` resolves, then stop accepting, finish requests in flight (bounded by
    /// `api.shutdown_timeout_secs`) and return.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            server,
            state,
            publishing,
            ..
        } = self;
        let handle = server.handle();
        tokio::pin!(server);
        let served = tokio::select! {
            result = &mut server => result.context("the HTTP server failed"),
            () = shutdown => {
                tracing::info!("draining the API");
                // The server handles the stop command only while it is polled: drive both.
                let ((), result) = tokio::join!(handle.stop(true), server);
                result.context("the HTTP server failed while draining")
            }
        };
        // The publisher sends what is queued once its last handle is gone (in the all-in-one,
        // the relay's in-process port holds one until the relay stops too).
        drop(state);
        if let Some(publishing) = publishing {
            let _ = tokio::time::timeout(PUBLISHER_GRACE, publishing).await;
        }
        served
    }
}
