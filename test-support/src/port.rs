//! Free loopback ports and waiting for a server to answer on one.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port nobody listens on right now (the OS picks it; another process could take it before
/// the server binds it, so callers retry on a failed start).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free loopback port: {e}"))
}

pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Poll `ready` every 20 ms until it holds or `limit` passed; whether it held.
pub(crate) fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether something accepts TCP connections on `port`.
pub(crate) fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)).is_ok()
}
