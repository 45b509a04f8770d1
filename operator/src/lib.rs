//! Enclave's operator: reconciles each `Tenant` into isolated namespaces and the objects that
//! keep its policy, reports what it sees, and decommissions safely.
//!
//! The modules, from the leaves up (no module imports one above it):
//! - [`labels`], [`units`], [`error`]: names, quantities and times, errors by phase;
//! - [`config`], [`pki`]: the operator's configuration; CAs and certificates (pure);
//! - [`desired`]: pure builders, `(Tenant, configuration) -> Desired`;
//! - [`exposure`], [`status`]: pure evaluation of the network and of the status;
//! - [`report`]: the compliance report, promise by promise, from a Tenant (pure);
//! - [`cache`]: the objects the operator compares against, kept by its watches;
//! - [`cluster`]: the only code that writes to the API server, and the applier;
//! - [`controllers`]: the Tenant pipeline and the restore/export requests;
//! - [`admission`], [`credentials`], [`telemetry`], [`notify`]: the guard, the backup broker,
//!   the admin server, the incident webhook.
#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod controllers;
pub mod credentials;
pub mod desired;
pub mod error;
pub mod exposure;
pub mod labels;
pub mod leader;
pub mod notify;
pub mod pki;
pub mod report;
pub mod status;
pub mod telemetry;
pub mod units;

pub use error::{Error, Result};
