//! `weir bench`: load generator and measurement kit for Weir and, through the same [`Target`]
//! trait, for the peer systems it is compared with (see the `weir-peer-bench` crate).
//!
//! The pieces:
//! - [`workload`]: what to run (producers, consumers, body size, count or duration, pacing, kind);
//!   the standard comparison workloads W1–W5 are in [`workload::standard`].
//! - [`target`]: the [`Target`], [`Producer`], [`Consumer`] and [`StreamTarget`] traits a system
//!   implements to be measured.
//! - [`driver`]: runs a workload against a target (producers and consumers as tokio tasks, an
//!   in-flight window per producer, a paced schedule), records HDR latency histograms and samples
//!   the server's RSS.
//! - [`disk`]: the disk's own fsync'd write bandwidth, the yardstick of storage workloads.
//! - [`report`]: one run's result, the human table, JSON, medians over runs.
//! - [`weir`]: Weir as a target, over the native protocol and over HTTP (streams: `weir_stream`).
//! - [`cli`]: the `weir bench` command line.

pub mod cli;
pub mod disk;
pub mod driver;
pub mod hist;
pub mod pacing;
pub mod report;
pub mod rss;
pub mod target;
pub mod weir;
mod weir_stream;
pub mod workload;

pub use target::{AckToken, Confirm, Consumer, Delivery, Producer, StreamTarget, Target};
pub use workload::{Kind, Workload};
