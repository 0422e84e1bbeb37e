//! End-to-end tests of the all-in-one binary: started as a user starts it, driven by REST and
//! `socket.io-client` (node), in its default configuration (SQLite + in-process bus) and with
//! PostgreSQL + Redis.

mod browsers;
mod contract;
mod data_dir;
mod helpers;
mod lifecycle;
mod restart;
mod sdk;
