//! Prints the CRDs of Enclave's API as YAML: `cargo run -p enclave-crds --bin crdgen > charts/enclave/files/crds/tenants.enclave.dev.yaml`.

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", enclave_crds::crds_yaml()?);
    Ok(())
}
