//! The accept loop and graceful shutdown (stop accepting, drain, close).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::Instrument;

use super::access::Access;
use super::config::EngineConfig;
use super::engine::{Engine, EngineHandler};
use super::errors::{Body, CloseReason};
use super::hooks::Hooks;
use super::router::route;

/// An Engine.IO endpoint (one path, one handler) that can be served by [`serve`] or mounted
/// behind another endpoint's [`Fallback`](super::Fallback) (several endpoints on one port).
pub struct Endpoint<H> {
    engine: Arc<Engine<H>>,
}

impl<H> Clone for Endpoint<H> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

/// An [`Endpoint`] that may be gone ([`Endpoint::downgrade`]).
pub struct WeakEndpoint<H>(Weak<Engine<H>>);

impl<H: EngineHandler> WeakEndpoint<H> {
    /// Open sessions; 0 once the endpoint is gone.
    pub fn session_count(&self) -> usize {
        self.0.upgrade().map_or(0, |engine| engine.session_count())
    }
}

impl<H: EngineHandler> Endpoint<H> {
    pub fn new(config: EngineConfig, handler: Arc<H>, hooks: Hooks) -> Self {
        Self {
            engine: Arc::new(Engine::new(config, handler, hooks)),
        }
    }

    /// Answers one HTTP request (Engine.IO under the configured path, the fallback elsewhere),
    /// inside a span with its request id, which the response carries back in `x-request-id`;
    /// one access-log line when answered (see [`access`](super::access)).
    pub fn handle(
        &self,
        mut request: Request<Incoming>,
        remote_addr: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let access = Access::start(&self.engine.config, &mut request);
        let answer = access
            .span()
            .in_scope(|| route(self.engine.clone(), request, remote_addr))
            .instrument(access.span());
        async move {
            let mut response = answer.await;
            access.finish(&mut response);
            response
        }
    }

    /// Open sessions (for metrics).
    pub fn session_count(&self) -> usize {
        self.engine.session_count()
    }

    /// A handle that does not keep the endpoint alive: for what the endpoint itself holds (its
    /// hooks), which would otherwise keep it, and all it holds, alive for ever.
    pub fn downgrade(&self) -> WeakEndpoint<H> {
        WeakEndpoint(Arc::downgrade(&self.engine))
    }

    /// Whether session `sid` has a polling GET in hand (held open until there is something to
    /// answer it with).
    pub fn poll_pending(&self, sid: &str) -> bool {
        self.engine
            .session(sid)
            .is_some_and(|session| session.poll_busy.load(Ordering::Acquire))
    }

    /// Refuses new sessions (handshakes get 503) without touching the open ones, which keep
    /// sending and receiving until [`shutdown`](Self::shutdown).
    pub fn stop_accepting(&self) {
        if !self.engine.draining.is_cancelled() {
            tracing::info!(sessions = self.engine.session_count(), path = %self.engine.config.path, "engine.io no longer accepting sessions");
            self.engine.draining.cancel();
        }
    }

    /// Refuses new sessions, closes every session with [`CloseReason::ServerShutdown`] (pending
    /// polls are answered with what is queued, WebSockets get a close frame) and waits, at most
    /// `config.shutdown_timeout`, for the endpoint's tasks (including the handler's `on_close`).
    pub async fn shutdown(&self) {
        self.shutdown_by(Instant::now() + self.engine.config.shutdown_timeout)
            .await;
    }

    /// [`shutdown`](Self::shutdown), waiting for the tasks until `deadline` at most.
    async fn shutdown_by(&self, deadline: Instant) {
        let engine = &self.engine;
        tracing::info!(sessions = engine.session_count(), path = %engine.config.path, "engine.io shutting down");
        engine.draining.cancel();
        engine.shutdown.cancel();
        engine.close_all(CloseReason::ServerShutdown);
        engine.tasks.close();
        if tokio::time::timeout_at(deadline, engine.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = engine.tasks.len(),
                "engine.io shutdown timed out; abandoning remaining tasks"
            );
        }
    }
}

/// Serves one endpoint on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight HTTP requests finish and shuts the endpoint down (see [`Endpoint::shutdown`]),
/// returning within `config.shutdown_timeout`.
pub async fn serve<H: EngineHandler>(
    listener: TcpListener,
    config: EngineConfig,
    handler: Arc<H>,
    hooks: Hooks,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_endpoint(listener, Endpoint::new(config, handler, hooks), shutdown).await
}

/// How often a condition that recurs is logged: the first at once, then at most one line a
/// minute with how many occurred meanwhile (out of file descriptors, a relay fails ~20 accepts
/// a second and wrote as many lines).
#[derive(Debug, Default)]
pub(crate) struct Occurrences {
    said_at: Option<Instant>,
    unsaid: u64,
}

impl Occurrences {
    const EVERY: Duration = Duration::from_secs(60);

    /// One more at `now`: `Some(occurrences since the last line)` when it is to be logged.
    pub(crate) fn occurred(&mut self, now: Instant) -> Option<u64> {
        self.unsaid += 1;
        if self.said_at.is_some_and(|at| now < at + Self::EVERY) {
            return None;
        }
        self.said_at = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

/// [`serve`] for an endpoint built beforehand (to keep a handle on it, e.g. for metrics).
pub async fn serve_endpoint<H: EngineHandler>(
    listener: TcpListener,
    endpoint: Endpoint<H>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_draining(listener, endpoint, shutdown, |_| async {}).await
}

/// [`serve_endpoint`] with a drain phase, all within one `config.shutdown_timeout` from the moment
/// `shutdown` resolves:
/// 1. the listener is closed (new connections are refused) and handshakes on connections already
///    open get 503, while open sessions keep sending and receiving;
/// 2. `drain` runs, given its budget (the bound less [`close_reserve`]) and cut off after it —
///    the layer above finishes its work in flight there, e.g. sends its last acks;
/// 3. every session is closed with [`CloseReason::ServerShutdown`] and the endpoint's tasks get
///    what is left of the bound.
pub async fn serve_draining<H: EngineHandler, D: Future<Output = ()>>(
    listener: TcpListener,
    endpoint: Endpoint<H>,
    shutdown: impl Future<Output = ()>,
    drain: impl FnOnce(Duration) -> D,
) -> anyhow::Result<()> {
    let engine = endpoint.engine.clone();
    let local = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%local, path = %engine.config.path, "engine.io listening");
    let max_headers_parsed = engine
        .config
        .max_headers_parsed
        .max(engine.config.max_headers + 1);
    tokio::pin!(shutdown);
    let mut failures = Occurrences::default();
    loop {
        let (stream, remote_addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    if let Some(since) = failures.occurred(Instant::now()) {
                        tracing::error!(
                            %error,
                            failed_since_last_said = since,
                            "accept failed: out of file descriptors? raise the relay's open-files \
                             limit (ulimit -n, LimitNOFILE=) above the connections it is to hold"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        let stop = engine.shutdown.clone();
        engine.tasks.spawn(async move {
            let service = service_fn(move |request| {
                let response = endpoint.handle(request, remote_addr);
                async move { Ok::<_, std::convert::Infallible>(response.await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .max_headers(max_headers_parsed)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%remote_addr, %error, "http connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let bound = engine.config.shutdown_timeout;
    let deadline = Instant::now() + bound;
    drop(listener);
    endpoint.stop_accepting();
    let budget = bound.saturating_sub(close_reserve(bound));
    if tokio::time::timeout(budget, drain(budget)).await.is_err() {
        tracing::warn!(?budget, "drain cut off; closing sessions anyway");
    }
    endpoint.shutdown_by(deadline).await;
    Ok(())
}

/// The part of the shutdown bound kept for closing sessions after the drain: a quarter, at most
/// a second (the WebSocket writer's final flush is capped at a second too).
pub fn close_reserve(bound: Duration) -> Duration {
    (bound / 4).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_are_logged_at_once_then_once_a_minute_with_their_count() {
        let mut failures = Occurrences::default();
        let start = Instant::now();

        let said: Vec<Option<u64>> = [0, 50, 100, 59_999, 60_000, 60_050, 120_000]
            .into_iter()
            .map(|ms| failures.occurred(start + Duration::from_millis(ms)))
            .collect();

        assert_eq!(
            said,
            [Some(1), None, None, None, Some(4), None, Some(2)],
            "the first, then each minute the failures since"
        );
    }
}
