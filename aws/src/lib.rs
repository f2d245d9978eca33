//! AWS adapters for the order ports. For now: the event item codec shared by the
//! DynamoDB event store and the stream projector.

pub mod codec;
