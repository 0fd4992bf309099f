//! HTTP-level tests against the running service on real PostgreSQL and Redis.
//! Each test gets its own database and Redis key prefix, so they run in parallel.

mod conversations;
mod delivery;
mod faults;
mod health;
mod helpers;
mod idempotency;
mod legacy;
mod list;
mod process;
mod send;
mod validation;
mod webhooks;
