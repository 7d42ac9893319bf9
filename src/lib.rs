//! minewatch: a real-time monitoring and early-warning stream processor for
//! coal-mine safety supervision.
//!
//! Data moves one way: sources ([`ingest`]) decode and validate outside
//! bytes into readings; the [`pipeline`] routes them by mine to shard
//! threads that run the pure [`detect`]ors; findings become alerts in the
//! [`alert`] stage, whose lifecycle writes each change and the pushes it
//! owes to the durable [`store`] before the [`web`] API, the SSE feed, MQTT
//! and the push channels see it; duty [`tasks`] follow the alerts; every
//! accepted reading and rejected record also goes to the Parquet
//! [`archive`], which [`review`] reads back for replay and audit.
//! [`daemon`] wires it together; [`config`] says what runs; [`cli`] holds
//! the commands' bodies.

pub mod alert;
pub mod archive;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod completion;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod private_files;
pub mod redact;
pub mod review;
#[path = "../simulators/mod.rs"]
pub mod simulators;
pub mod store;
pub mod tasks;
pub mod web;
