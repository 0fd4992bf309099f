//! Conformance suites for the two storage seams: every case is written once, as a function of
//! `Arc<dyn Store>` or `Arc<dyn Queue>`, and run against every implementation (PostgreSQL and
//! SQLite; Redis Streams and the in-process queue). Same inputs, same observable results.

#[path = "../common/scratch.rs"]
#[allow(dead_code)] // The HTTP suite uses the rest.
mod scratch;

#[macro_use]
mod backends;
mod early_receipts;
mod events;
mod queue;
mod sendgrid_reconcile;
mod sqlite_vacuum;
mod store;
mod store_corrections;
mod store_features;
mod store_schedule;
mod store_suppressions;
#[path = "../common/wait.rs"]
mod wait;
