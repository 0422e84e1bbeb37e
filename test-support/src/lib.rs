//! Fixtures for tests that need a dependency of their own to break: a Redis server or a
//! PostgreSQL cluster on a free loopback port, which the test stops and restarts at will while
//! the shared instances (127.0.0.1:6379, :5432) keep serving every other test.
//!
//! # Layout
//! - [`redis`]: [`RedisServer`], a `redis-server` process.
//! - [`postgres`]: [`PgCluster`], an `initdb` cluster run by `pg_ctl` in a temporary directory.
//! - `port`: picking a free loopback port and waiting for one to answer. `signal`: `kill -STOP`
//!   and the like, to freeze a server.
//! - [`metrics`]: checks of the `process_*` metrics on a service's `/metrics`.
//!
//! Standard library only, blocking calls (each takes milliseconds to a few seconds): call them
//! from async tests directly, or through `spawn_blocking` where the app under test must keep
//! running on the same thread meanwhile. A missing binary panics with what to install.

pub mod metrics;
mod port;
pub mod postgres;
pub mod redis;
mod signal;

pub use postgres::PgCluster;
pub use redis::RedisServer;
