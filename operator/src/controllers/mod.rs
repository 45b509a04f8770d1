//! The controllers: the Tenant pipeline, and the restore and export requests beside it.

pub mod requests;
pub mod tenant;
