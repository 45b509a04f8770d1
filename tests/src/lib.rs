//! Enclave's local control plane launcher and the shared fixture of its integration tests.
#![forbid(unsafe_code)]

pub mod bench;
pub mod chaos;
pub mod chart;
pub mod controlplane;
pub mod harness;
pub mod pki;
pub mod replica;
