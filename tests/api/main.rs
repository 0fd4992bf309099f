//! HTTP-level tests against the running service on real PostgreSQL and Redis.
//! Each test gets its own database and Redis key prefix, so they run in parallel.
//! `TEST_BACKEND=embedded` runs the same suite on a SQLite file and the in-process queue.

mod delivery;
mod embedded;
mod faults;
mod health;
mod helpers;
mod idempotency;
mod list;
mod process;
mod send;
mod validation;
