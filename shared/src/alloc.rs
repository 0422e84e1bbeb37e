//! The allocator of Parley's binaries (`socket-server`, `api-server`, the all-in-one `parley`,
//! and the bench and protocol echo that measure them), each installing it with
//! `#[global_allocator] static ALLOCATOR: Allocator = shared::alloc::ALLOCATOR;`.
//!
//! jemalloc, for two reasons measured on the binaries:
//! - **A relay's memory follows its connections.** Each one holds buffers, an outbox, tasks
//!   and table entries, all freed when it closes. With glibc's malloc the freed pages stayed
//!   with the process (3 000 sockets connected then dropped: RSS 30 → 112 MiB, and still
//!   112 MiB a minute later), scattered over its arenas where trimming cannot reach them.
//!   jemalloc, with its background threads, purges freed pages on a timer (`dirty_decay_ms`,
//!   10 s by default), so RSS comes back near its baseline once the connections are gone, even
//!   if the relay is idle afterwards. `socket-server/tests/relay/memory.rs` checks this on the
//!   real binary.
//! - **The API stores batches with less CPU**: with glibc's malloc a fifth of its CPU storing
//!   batches went to the allocator (`bench/README.md`, session 24).

/// jemalloc.
#[cfg(not(target_env = "msvc"))]
pub type Allocator = tikv_jemallocator::Jemalloc;
#[cfg(not(target_env = "msvc"))]
pub const ALLOCATOR: Allocator = tikv_jemallocator::Jemalloc;

/// The system allocator where jemalloc does not build (MSVC).
#[cfg(target_env = "msvc")]
pub type Allocator = std::alloc::System;
#[cfg(target_env = "msvc")]
pub const ALLOCATOR: Allocator = std::alloc::System;
