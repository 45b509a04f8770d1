use super::*;

fn crd_json() -> String {
    serde_json::to_string(&Tenant::crd()).expect("CRD serialises")
}

#[test]
fn defaults_give_three_zones_dmz_app_data() {
    let spec: TenantSpec = serde_json::from_str("{}").expect("empty spec parses");
    let names: Vec<_> = spec.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["dmz", "app", "data"]);
    assert_eq!(spec.zones[0].exposure, Exposure::Internet);
    assert_eq!(spec.zones[2].allow_from, ["app"]);
    assert_eq!(spec.lifecycle.retention, "7d");
}

#[test]
fn crd_is_cluster_scoped_with_short_name_and_status() {
    let crd = Tenant::crd();
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["tnt".to_string()]));
    let version = &crd.spec.versions[0];
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Zones",
            "Workloads",
            "Cert-Expiry",
            "Last-Backup",
            "Purge-After",
            "Age"
        ]
    );
}

#[test]
fn crd_carries_the_validation_rules() {
    let json = crd_json();
    for needle in [
        "allowFrom names a zone that is not declared",
        "retention must not exceed 30 days",
        "size cannot shrink",
        "isCIDR(c)",
        r#""x-kubernetes-list-map-keys":["name"]"#,
        "metadata.name must be a DNS label",
    ] {
        assert!(json.contains(needle), "CRD lacks {needle}");
    }
}

#[test]
fn every_schema_property_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                let skip =
                    path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
                if !skip && prop.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in [Tenant::crd(), TenantRestore::crd(), TenantExport::crd()] {
        let crd = serde_json::to_value(crd).expect("CRD serialises");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut here = Vec::new();
        walk("", schema, &mut here);
        missing.extend(here.into_iter().map(|p| format!("{kind}{p}")));
    }
    // Conditions come from k8s-openapi and are documented there.
    missing.retain(|p| !p.contains(".status.conditions"));
    assert!(missing.is_empty(), "undocumented fields: {missing:?}");
}

#[test]
fn committed_crd_yaml_is_current() {
    let committed = include_str!("../../charts/enclave/files/crds/tenants.enclave.dev.yaml");
    let generated = crds_yaml().expect("CRD serialises");
    assert!(
        committed == generated,
        "charts/enclave/files/crds/tenants.enclave.dev.yaml is stale: run `cargo run -p enclave-crds --bin crdgen > charts/enclave/files/crds/tenants.enclave.dev.yaml`"
    );
}

#[test]
fn example_requests_parse() {
    let restore: TenantRestore =
        serde_yaml::from_str(include_str!("../../examples/requests/restore.yaml"))
            .expect("restore example");
    assert_eq!(restore.spec.volumes, ["db"]);
    assert_eq!(restore.spec.snapshot, "latest");
    let export: TenantExport =
        serde_yaml::from_str(include_str!("../../examples/requests/export.yaml"))
            .expect("export example");
    assert_eq!(export.spec.tenant, "acme");
}

#[test]
fn retention_and_validity_come_from_one_default() {
    use std::time::Duration;
    let mut lifecycle: Lifecycle = serde_json::from_value(serde_json::json!({})).expect("defaults");
    assert_eq!(lifecycle.retention, DEFAULT_RETENTION);
    assert_eq!(lifecycle.retention(), Duration::from_secs(7 * 86_400));
    lifecycle.retention = "45d".into();
    assert_eq!(
        lifecycle.retention(),
        Duration::from_secs(MAX_RETENTION_SECONDS),
        "clamped to the policy's 30 days"
    );
    lifecycle.retention = "90s".into();
    assert_eq!(lifecycle.retention(), Duration::from_secs(90));
    lifecycle.retention = "nonsense".into();
    assert_eq!(lifecycle.retention(), Duration::from_secs(7 * 86_400));
    let tls: Tls =
        serde_json::from_value(serde_json::json!({"dnsNames": ["a.example"]})).expect("defaults");
    assert_eq!(tls.validity(), Duration::from_secs(90 * 86_400));
}
