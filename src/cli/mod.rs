//! Operator commands of the binary that print to stdout: `keys` (API keys) and `dlq`
//! (the dead-letter queue), `events` (failed webhook deliveries). They call the store and the services; nothing in the HTTP
//! layer imports them.

pub mod dlq;
pub mod events;
pub mod keys;
