//! HTTP-level tests against the running service on real PostgreSQL and Redis.
//! Each test gets its own database and Redis key prefix, so they run in parallel.

mod api_keys;
mod delivery;
mod faults;
mod fuzz;
mod health;
mod helpers;
mod idempotency;
mod list;
mod process;
mod rate_limit;
mod send;
mod validation;
