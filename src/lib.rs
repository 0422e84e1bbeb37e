//! Parley in one process: the API and the relay on their own ports, sharing one bus.
//!
//! # Layout
//! - [`settings`]: the all-in-one's defaults (embedded SQLite, in-process bus, a persisted JWT
//!   secret) on top of each service's own settings.
//! - [`AllInOne`]: build both services, report their addresses, run until shutdown.
//! - [`web`]: the reference web app (`clients/web/`, built by `build.rs`), served on the API's
//!   port.
//!
//! With `DATABASE_URL=postgres://…` and `REDIS_URL` set, the same binary uses PostgreSQL and
//! Redis instead; the separate `api-server` and `socket-server` binaries stay the way to scale
//! them independently.

pub mod settings;
pub mod web;

use anyhow::Context;
use serde::Serialize;
use settings::{AllInOneSettings, BusChoice};
use shared::bus::memory::MemoryBus;
use shared::bus::redis::RedisBus;
use shared::bus::{Bus, Keys};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// Both services, bound and ready to run.
pub struct AllInOne {
    api: api_server::startup::Application,
    relay: socket_server::startup::Application,
    addresses: Addresses,
}

/// Where the services listen: printed as one JSON line at start-up.
#[derive(Debug, Clone, Serialize)]
pub struct Addresses {
    pub api: String,
    pub socket: String,
    pub database: String,
    pub bus: &'static str,
    /// The web app's address (the API's), or `null` when it was built without npm.
    pub web: Option<String>,
}

impl AllInOne {
    /// Open the store and the bus, bind the API, then the relay pointed at it.
    pub async fn build(settings: AllInOneSettings) -> anyhow::Result<Self> {
        let AllInOneSettings {
            api: api_settings,
            relay: mut relay_settings,
            bus: bus_choice,
            database_label,
        } = settings;
        let store = api_server::store::open(&api_settings.database)
            .await
            .context("opening the store (DATABASE_URL)")?;
        let (bus, subscriber, received, bus_label): (Arc<dyn Bus>, _, _, _) = match bus_choice {
            BusChoice::InProcess => {
                let bus = Arc::new(MemoryBus::new());
                let (subscriber, received) = bus.subscribe();
                (bus, subscriber, received, "in-process")
            }
            BusChoice::Redis { url, prefix } => {
                let keys = Keys::new(prefix);
                let bus = RedisBus::connect(&url, keys.clone())
                    .await
                    .context("connecting to Redis (REDIS_URL)")?;
                let (subscriber, received) = bus.subscribe();
                (Arc::new(bus), subscriber, received, "redis")
            }
        };
        let relay_port = web::RelayPort::default();
        let api = api_server::startup::Application::build_with_extra(
            api_settings.clone(),
            store,
            bus.clone(),
            Some(web::services(relay_port.clone())),
        )
        .await?;
        let api_url = format!("http://{}:{}", loopback(&api_settings.api.host), api.port());
        relay_settings.api.url = api_url.clone();
        // The relay calls the API's logic in process: no loopback HTTP, no second token check.
        let relay = socket_server::startup::Application::build_with(
            relay_settings.clone(),
            bus,
            subscriber,
            received,
            api.relay_port(),
        )
        .await?;
        relay_port.set(relay.port());
        let socket_url = format!(
            "http://{}:{}",
            loopback(&relay_settings.socket.host),
            relay.port()
        );
        let web_url = web::built().then(|| format!("{api_url}/"));
        Ok(Self {
            api,
            relay,
            addresses: Addresses {
                api: api_url,
                socket: socket_url,
                database: database_label,
                bus: bus_label,
                web: web_url,
            },
        })
    }

    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// Serve both until `shutdown` resolves (or either service stops), then drain both.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let when_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut api = tokio::spawn(self.api.run_until_stopped(when_stopped(stopped.clone())));
        let mut relay = tokio::spawn(self.relay.run_until_stopped(when_stopped(stopped)));
        tokio::pin!(shutdown);
        let (mut api_done, mut relay_done) = (None, None);
        tokio::select! {
            () = &mut shutdown => {}
            r = &mut api => api_done = Some(r),
            r = &mut relay => relay_done = Some(r),
        }
        let _ = stop.send(true);
        let api_result = match api_done {
            Some(r) => r,
            None => api.await,
        };
        let relay_result = match relay_done {
            Some(r) => r,
            None => relay.await,
        };
        flatten(api_result)
            .context("the API failed")
            .and(flatten(relay_result).context("the relay failed"))
    }
}

fn flatten(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.context("a service task panicked")?
}

/// The address clients use for a bind host: the wildcard binds are reached on loopback.
fn loopback(host: &str) -> &str {
    match host {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        other => other,
    }
}
