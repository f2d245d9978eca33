//! The `orders` CLI's library: the composition root of the local runtime, and the small
//! HTTP client the `submit` and `bench` commands use. `main.rs` only parses arguments.

pub mod bench;
pub mod browser_guard;
pub mod client;
pub mod console;
pub mod dir_lock;
pub mod local_auth;
pub mod projections;
pub mod replay;
pub mod runtime;
pub mod sales;
pub mod sample;
pub mod seed;
pub mod throttle;
pub mod verify;
