//! A self-hosted messaging service: one HTTP API to send and receive SMS, MMS and email,
//! backed by PostgreSQL (the truth) and Redis Streams (the work queue) — or, embedded in one
//! process, by a SQLite file and an in-process queue.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod net;
pub mod observability;
pub mod provider;
pub mod queue;
pub mod ratelimit;
pub mod service;
pub mod store;
pub mod webhook;
pub mod worker;
