//! The sides `chat` runs against as processes of their own on the server core (`procs`): what
//! each starts, the users and conversations it is given, and which processes its CPU is read
//! from.
//!
//! | side | relay(s) | storage | Redis |
//! |---|---|---|---|
//! | `parley` | `socket-server` ×N | `api-server` + PostgreSQL | always (Parley's bus) |
//! | `node` | `bench/peers/node/relay.mjs` ×N | none | with 2+ relays (`@socket.io/redis-adapter`) |
//! | `socketioxide` | `socketioxide-peer` ×N | none | with 2+ relays (its Redis adapter) |
//! | `seeds` | `relay.mjs` ×N | `bench/peers/seeds-api` + PostgreSQL | with 2+ relays |

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::peers::{self, Peer};
use crate::procs::{self, Postgres, Proc, Redis};
use crate::stack;

/// How long a server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Conversations created at once through Parley's API.
const CONVERSATIONS_IN_PARALLEL: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The stack in this process (the harness's first mode; earlier README figures).
    Inproc,
    Parley,
    Node,
    Socketioxide,
    Seeds,
}

impl Side {
    pub fn parse(text: &str) -> anyhow::Result<Side> {
        Ok(match text {
            "inproc" => Side::Inproc,
            "parley" => Side::Parley,
            "node" => Side::Node,
            "socketioxide" => Side::Socketioxide,
            "seeds" => Side::Seeds,
            _ => bail!("--side must be parley, node, socketioxide, seeds or inproc, not {text:?}"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Inproc => "inproc",
            Side::Parley => "parley",
            Side::Node => "node",
            Side::Socketioxide => "socketioxide",
            Side::Seeds => "seeds",
        }
    }

    /// Whether the side stores messages (its ack then carries the stored id, or, for the seeds,
    /// comes from the API).
    pub fn stores(self) -> bool {
        !matches!(self, Side::Node | Side::Socketioxide)
    }
}

/// One user of the run: its id (a decimal string) and a token for it.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// What the generator talks to.
pub struct Target {
    pub side: Side,
    /// Each relay's `ws://…/socket.io/` base.
    pub relays: Vec<String>,
    /// Users `2c` and `2c + 1` are the members of conversation `c`.
    pub users: Vec<User>,
    pub conversations: Vec<String>,
    /// The seeds' API base (`http://…`), where each message is also POSTed.
    pub api: Option<String>,
}

/// A side's servers, stopped when dropped, and the processes its CPU is read from.
pub struct Servers {
    /// `(part, pids)`: `relay`, `api`, `postgres`, `redis` (each PID with its descendants).
    pub parts: Vec<(&'static str, Vec<u32>)>,
    /// Parley's Redis (`INFO commandstats` before and after the load).
    pub redis_url: Option<String>,
    // Dropped in this order: the servers before the storage they use.
    _procs: Vec<Proc>,
    _parley: Option<procs::ParleyStack>,
    _postgres: Option<Postgres>,
    _redis: Option<Redis>,
}

/// Start `side` with `relays` relays for `users` users in direct pairs.
pub async fn start(side: Side, relays: usize, users: usize) -> anyhow::Result<(Target, Servers)> {
    match side {
        Side::Parley => parley(relays, users).await,
        Side::Node | Side::Socketioxide | Side::Seeds => peer(side, relays, users).await,
        Side::Inproc => bail!("the in-process stack is not started here"),
    }
}

async fn parley(relays: usize, users: usize) -> anyhow::Result<(Target, Servers)> {
    let stack = procs::ParleyStack::start(relays).await?;
    let made = stack.users(users).await.context("creating the users")?;
    let users: Vec<User> = made
        .into_iter()
        .map(|u| User {
            id: u.id.to_string(),
            token: u.token,
        })
        .collect();
    let conversations = direct_conversations(&stack.api_url, &users)
        .await
        .context("creating the conversations through Parley's API")?;
    let target = Target {
        side: Side::Parley,
        relays: stack.relay_urls.clone(),
        users,
        conversations,
        api: None,
    };
    let servers = Servers {
        parts: stack.parts(),
        redis_url: Some(stack.redis.url()),
        _procs: Vec::new(),
        _parley: Some(stack),
        _postgres: None,
        _redis: None,
    };
    Ok((target, servers))
}

/// One direct conversation per pair of `users` through `POST /api/conversations`; their ids.
async fn direct_conversations(api: &str, users: &[User]) -> anyhow::Result<Vec<String>> {
    let http = stack::http_client(Duration::from_secs(60))?;
    let http = &http;
    stream::iter(users.chunks(2))
        .map(|pair| stack::conversation(http, api, &pair[0].token, &pair[1].id))
        .buffered(CONVERSATIONS_IN_PARALLEL)
        .try_collect()
        .await
}

/// A peer: its relays (linked by a Redis of the run's own when there are several) and, for the
/// seeds, its API on a PostgreSQL of the run's own.
async fn peer(side: Side, relays: usize, users: usize) -> anyhow::Result<(Target, Servers)> {
    let ids: Vec<i64> = (1..=users as i64).collect();
    let users = ids
        .iter()
        .zip(procs::sign(&ids)?)
        .map(|(id, token)| User {
            id: id.to_string(),
            token,
        })
        .collect::<Vec<_>>();
    let redis = if relays > 1 {
        Some(Redis::start().await?)
    } else {
        None
    };
    let mut procs_started = Vec::new();
    let mut parts = Vec::new();
    let (mut postgres, mut api) = (None, None);
    let mut conversations: Vec<String> = (1..=users.len() / 2).map(|c| c.to_string()).collect();
    if side == Side::Seeds {
        let pg = Postgres::start().await?;
        let port = procs::free_port()?;
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(seeds_api_dir()?)
            .env("NODE_ENV", "production")
            .env("PORT", port.to_string())
            .env("JWT_SECRET", procs::JWT_SECRET)
            .env("DATABASE_URL", pg.url("seeds"));
        let mut process = procs::spawn("seeds-api", command)?;
        procs::wait_port(&mut process, port, START_LIMIT).await?;
        conversations = seed_rows(&pg.url("seeds"), &ids).await?;
        parts.push(("api", vec![process.pid()]));
        parts.push(("postgres", vec![pg.pid()]));
        procs_started.push(process);
        api = Some(format!("http://127.0.0.1:{port}"));
        postgres = Some(pg);
    }
    let mut relay_urls = Vec::new();
    let mut relay_pids = Vec::new();
    for r in 0..relays {
        let port = procs::free_port()?;
        let mut command = relay_command(side)?;
        command
            .env("PORT", port.to_string())
            .env("JWT_SECRET", procs::JWT_SECRET);
        if let Some(redis) = &redis {
            command.env("REDIS_URL", redis.url());
        }
        let mut process = procs::spawn(&format!("{}-relay-{r}", side.name()), command)?;
        procs::wait_port(&mut process, port, START_LIMIT).await?;
        relay_urls.push(format!("ws://127.0.0.1:{port}/socket.io/"));
        relay_pids.push(process.pid());
        procs_started.push(process);
    }
    parts.insert(0, ("relay", relay_pids));
    if let Some(redis) = &redis {
        parts.push(("redis", vec![redis.pid()]));
    }
    let target = Target {
        side,
        relays: relay_urls,
        users,
        conversations,
        api,
    };
    // Relays before the API: the list is dropped front to back.
    procs_started.reverse();
    let servers = Servers {
        parts,
        redis_url: None,
        _procs: procs_started,
        _parley: None,
        _postgres: postgres,
        _redis: redis,
    };
    Ok((target, servers))
}

/// The command of one relay of a peer side (`peers`: installed by `bench/peers/install`).
fn relay_command(side: Side) -> anyhow::Result<Command> {
    peers::command(if side == Side::Socketioxide {
        Peer::Socketioxide
    } else {
        Peer::Node
    })
}

/// `bench/peers/seeds-api`, installed (its `node_modules` present).
fn seeds_api_dir() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/seeds-api");
    if !dir.join("node_modules/pg").is_dir() {
        bail!(
            "{} is not installed: run bench/peers/install node (needs node and npm)",
            dir.display()
        );
    }
    Ok(dir)
}

/// The seeds' users, one direct conversation per pair (`2c - 1`, `2c`, conversation `c`) and its
/// members, inserted in bulk; the conversations' ids.
async fn seed_rows(url: &str, ids: &[i64]) -> anyhow::Result<Vec<String>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to the seeds' database")?;
    tokio::spawn(connection);
    let names: Vec<String> = ids.iter().map(|id| format!("user{id}")).collect();
    let conversations: Vec<i64> = (1..=ids.len() as i64 / 2).collect();
    let members: Vec<i64> = ids.iter().map(|id| (id + 1) / 2).collect();
    client
        .execute(
            "INSERT INTO users (id, username) SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&ids, &names],
        )
        .await
        .context("inserting the seeds' users")?;
    client
        .execute(
            "INSERT INTO conversations (id) SELECT * FROM unnest($1::bigint[])",
            &[&conversations],
        )
        .await
        .context("inserting the seeds' conversations")?;
    client
        .execute(
            "INSERT INTO conversation_members (conversation_id, user_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            &[&members, &ids],
        )
        .await
        .context("inserting the seeds' members")?;
    Ok(conversations.iter().map(i64::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_named_as_the_flag_takes_them() {
        for side in [
            Side::Inproc,
            Side::Parley,
            Side::Node,
            Side::Socketioxide,
            Side::Seeds,
        ] {
            assert_eq!(Side::parse(side.name()).unwrap(), side);
        }
        let error = Side::parse("deno").unwrap_err().to_string();
        assert!(
            error.contains("--side") && error.contains("deno"),
            "{error}"
        );
    }
}
