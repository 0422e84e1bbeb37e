//! What the recovery tests need beyond `spawn_stack()`: a relay of their own whose API or Redis
//! connections go through a [`Forwarder`] they can cut, the stack's bus prefix, and `redis-cli`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket_server::settings::Settings;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::helpers::{spawn_stack_with, Stack};

pub const REDIS_ADDR: &str = "127.0.0.1:6379";

/// A TCP forwarder on a loopback port 0 to `target`. It remembers the local address of every
/// upstream connection it opens (so the Redis server's `CLIENT LIST` can be filtered to them),
/// and [`Forwarder::close`] closes its port and every forwarded connection.
pub struct Forwarder {
    pub addr: SocketAddr,
    upstreams: Arc<Mutex<Vec<SocketAddr>>>,
    tasks: Option<JoinSet<()>>,
}

impl Forwarder {
    pub async fn start(target: &str) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstreams: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let mut tasks = JoinSet::new();
        let target = target.to_owned();
        let seen = upstreams.clone();
        tasks.spawn(async move {
            // The connection tasks belong to this accept task: aborting it drops them all.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    continue;
                };
                seen.lock().unwrap().push(upstream.local_addr().unwrap());
                connections.spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Forwarder {
            addr,
            upstreams,
            tasks: Some(tasks),
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// Local addresses of the upstream connections opened so far.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.upstreams.lock().unwrap().clone()
    }

    /// Close the port (connecting to it is then refused) and every forwarded connection.
    pub async fn close(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// A stack with one relay, and that relay's settings: a template for more relays on the same
/// bus (prefix, JWT) whose API or Redis URL a test changes.
pub async fn spawn_stack_and_relay_settings() -> (Stack, Settings) {
    let template: Arc<Mutex<Option<Settings>>> = Arc::default();
    let seen = template.clone();
    let stack = spawn_stack_with(1, move |settings| {
        *seen.lock().unwrap() = Some(settings.clone());
    })
    .await;
    let settings = template.lock().unwrap().take().unwrap();
    (stack, settings)
}

/// Start one more relay with `settings` and add its port to `stack.relay_ports`; returns its
/// index there and the sender that stops it.
pub async fn spawn_relay(stack: &mut Stack, settings: Settings) -> (usize, oneshot::Sender<()>) {
    let relay = socket_server::startup::Application::build(settings)
        .await
        .unwrap_or_else(|e| panic!("the relay did not start: {e:#}"));
    stack.relay_ports.push(relay.port());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(relay.run_until_stopped(async move {
        let _ = rx.await;
    }));
    (stack.relay_ports.len() - 1, tx)
}

/// Run `redis-cli` against the test Redis; its standard output.
pub fn redis_cli(args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379"])
        .args(args)
        .output()
        .expect("redis-cli must be installed");
    assert!(output.status.success(), "redis-cli {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Ids of the Redis connections opened from one of `from` that are subscribed to a channel.
pub fn subscribed_connections(from: &[SocketAddr]) -> Vec<String> {
    redis_cli(&["CLIENT", "LIST"])
        .lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            let addr: SocketAddr = field("addr")?.parse().ok()?;
            let subscribed = field("sub")?.parse::<u32>().ok()? > 0;
            (subscribed && from.contains(&addr)).then(|| field("id").map(str::to_owned))?
        })
        .collect()
}

/// Wait (polling `CLIENT LIST`) until a connection from `from`, other than `except`, is
/// subscribed; its id.
pub async fn resubscribed(forwarder: &Forwarder, except: &[String]) -> String {
    for _ in 0..100 {
        let fresh = subscribed_connections(&forwarder.upstreams())
            .into_iter()
            .find(|id| !except.contains(id));
        if let Some(id) = fresh {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the relay did not resubscribe within 5 s");
}
