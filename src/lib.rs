//! iocwatch: a monitoring agent for provincial operations centres.
//!
//! Data flows one way:
//!
//! ```text
//! config (YAML) ──load+validate──▶ catalog (immutable, swapped whole on reload)
//!        ──▶ scheduler (one queue of turns, batched wake-ups, spread over the interval, bounded per kind)
//!        ──▶ probe results ──▶ state (sole owner of results) ──▶ metrics (/metrics)
//! ```
//!
//! - [`config`]: YAML files, includes, file_sd, and validation with file:line:column errors.
//! - [`catalog`]: the validated runtime model (areas, systems, targets, checks).
//! - [`probe`]: one file per probe kind: icmp, tcp, http.
//! - [`scheduler`]: timing, spreading, concurrency limits, lateness.
//! - [`state`]: last results, target states, area and system rollups.
//! - [`metrics`]: metric families on the agent's own registry.
//! - [`server`]: the HTTP surface.
//! - [`app`]: wiring, supervision, reload and shutdown.

pub mod alert;
pub mod app;
pub mod catalog;
pub mod config;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod probe;
pub mod reach;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod status;
pub mod store;
pub mod tls;

pub use app::{run, start, Agent, AppError, Options};
