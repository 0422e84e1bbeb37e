//! The fixtures start, stop, restart and clean up what they run.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use test_support::{PgCluster, RedisServer};

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn redis_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    stream.write_all(b"PING\r\n").is_ok()
        && BufReader::new(stream).read_line(&mut line).is_ok()
        && line.starts_with("+PONG")
}

/// Poll until nothing listens on `port` (a killed process may take a moment), at most 5 s.
fn released(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while accepts(port) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_redis_server_stops_and_restarts_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert!(redis_ping(port));
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));

    redis.stop();
    assert!(!redis.is_running());
    assert!(!accepts(port), "nothing listens once stopped");

    redis.restart();
    assert_eq!(redis.port(), port);
    assert!(redis.is_running());
    assert!(redis_ping(port));
}

#[test]
fn dropping_a_redis_server_kills_it() {
    let redis = RedisServer::start();
    let port = redis.port();
    drop(redis);
    assert!(released(port));
}

#[test]
fn a_postgres_cluster_stops_restarts_on_the_same_port_and_is_removed_on_drop() {
    let mut pg = PgCluster::start();
    let port = pg.port();
    assert!(accepts(port));
    assert_eq!(
        pg.url("postgres"),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );

    pg.stop();
    assert!(!accepts(port), "nothing listens once stopped");

    pg.restart();
    assert!(accepts(port));
    let dir = pg
        .log_file()
        .parent()
        .map(|d| d.to_path_buf())
        .expect("a directory");
    drop(pg);
    assert!(released(port));
    assert!(!dir.exists(), "the directory is removed on drop");
}
