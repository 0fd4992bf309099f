//! HTTP-level tests against the running service on real PostgreSQL and Redis.
//! Each test gets its own database and Redis key prefix, so they run in parallel.
//! `TEST_BACKEND=embedded` runs the same suite on a SQLite file and the in-process queue.

mod api_docs;
mod api_keys;
mod console;
mod conversations;
mod delivery;
mod delivery_safety;
mod early_receipts;
mod embedded;
mod events;
mod fault_suite;
mod faults;
mod fuzz;
mod harness;
mod health;
mod helpers;
mod hostile_urls;
mod idempotency;
mod legacy;
mod list;
mod logs;
mod metrics;
mod process;
mod providers_e2e;
mod providers_failover;
mod providers_pacing;
mod providers_redrive;
mod providers_sendgrid;
mod providers_smtp;
mod providers_twilio;
mod queue_entries;
mod rate_limit;
mod readiness;
mod reconcile;
mod schedule;
#[path = "../common/scratch.rs"]
mod scratch;
mod segments;
mod send;
mod sendgrid_reconcile;
mod sms_sizing;
mod status_correction;
mod suppressions;
mod unauthenticated;
mod validation;
#[path = "../common/wait.rs"]
mod wait;
mod webhooks;
mod wire;
