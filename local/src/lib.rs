//! The embedded local runtime: SQLite adapters for the ports, the stream tailer, and
//! (later) the local topic, queue, mailbox and console.

pub mod checkpoint;
pub mod redrive;
pub mod store;
pub mod tailer;
pub mod workflow;
