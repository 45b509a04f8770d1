//! Attacks on the real control plane: each made as an impersonated tenant admin (`alice`, in the
//! group `<tenant>-admins` that `spec.access.admins` binds) or with a backup pod's token, and
//! shown refused with a 403 that names what was refused, the attempt recorded as a Warning Event
//! `AttemptRefused` naming alice on the Tenant that owns the namespace; and the legitimate
//! action next to each still allowed.
//!
//! Every test has tenants of its own (`atk-*`); an attack test and its counter-test may share
//! one, created by whichever runs first.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::{Phase, Tenant};
use enclave_operator::credentials;
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;
use std::process::Output;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
/// The tenant admin every attack is made as.
const ALICE: &str = "alice";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

/// `spec.access` making `<tenant>-admins` the tenant's admins.
fn admins(tenant: &str) -> Value {
    json!({"admins": [{"kind": "Group", "name": format!("{tenant}-admins")}]})
}

/// `spec.backup` with a schedule that does not fire during a test: its Jobs are the tests' own.
fn backup(tenant: &str) -> Value {
    json!({"schedule": "0 3 1 1 *",
           "destination": {"endpoint": "https://s3.example", "bucket": "backups",
                           "credentialsSecret": format!("{tenant}-s3")}})
}

/// Creates the Tenant `name` (and, when it has backups, its store's credentials in the
/// operator's namespace); already there is fine: an attack test and its counter-test share it.
async fn ensure_tenant(client: &Client, name: &str, spec: Value) -> Result<()> {
    if spec.get("backup").is_some() {
        let store: Secret = object(json!({
            "metadata": {"name": format!("{name}-s3")},
            "stringData": {"AWS_ACCESS_KEY_ID": format!("{name}-key-id"),
                           "AWS_SECRET_ACCESS_KEY": format!("{name}-secret")}
        }));
        tolerate_exists(
            Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
                .create(&PostParams::default(), &store)
                .await,
        )?;
    }
    let tenant: Tenant = object(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}),
    );
    tolerate_exists(
        Api::<Tenant>::all(client.clone())
            .create(&PostParams::default(), &tenant)
            .await,
    )
}

fn tolerate_exists<T>(result: Result<T, kube::Error>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn wait_ready(client: &Client, name: &str) -> Result<Tenant> {
    let api = Api::<Tenant>::all(client.clone());
    eventually(&format!("tenant {name} Ready"), WAIT, || async {
        let t = api.get(name).await?;
        let ready = t.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Ready) && s.observed_generation == t.metadata.generation
        });
        Ok(ready.then_some(t))
    })
    .await
}

/// Waits until the namespaced object exists.
async fn wait_for<K>(client: &Client, namespace: &str, name: &str) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    eventually(
        &format!("{} {namespace}/{name}", K::kind(&K::DynamicType::default())),
        WAIT,
        || async { Ok(api.get_opt(name).await?) },
    )
    .await
}

/// Waits until alice's admin binding is in `namespace`, so what she is refused is not RBAC's
/// doing for want of a binding.
async fn wait_for_access(client: &Client, namespace: &str) -> Result<()> {
    wait_for::<RoleBinding>(client, namespace, "enclave-admins")
        .await
        .map(drop)
}

/// A client acting as alice, admin of `tenant`.
async fn alice(tenant: &str) -> Result<Client> {
    env()
        .client_as(
            ALICE,
            &[&format!("{tenant}-admins"), "system:authenticated"],
        )
        .await
}

/// A `kubectl` command as alice, admin of `tenant`, logging each response's status (`-v=6`).
fn kubectl_as_alice(tenant: &str) -> std::process::Command {
    let mut cmd = env().kubectl();
    cmd.args([
        "--as",
        ALICE,
        "--as-group",
        &format!("{tenant}-admins"),
        "--as-group",
        "system:authenticated",
        "--request-timeout=30s",
        "-v=6",
    ]);
    cmd
}

/// A pod template spec that Pod Security `restricted` admits, so that a refusal is the guard's.
fn restricted_pod_spec(extra: &Value) -> Value {
    let mut spec = json!({
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app", "image": "registry.example/app:1",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
        }]
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    spec
}

fn pod(name: &str, labels: &Value, extra: &Value) -> Pod {
    object(
        json!({"metadata": {"name": name, "labels": labels}, "spec": restricted_pod_spec(extra)}),
    )
}

fn deployment(name: &str, labels: &Value, extra: &Value) -> Deployment {
    let mut pod_labels = labels.clone();
    pod_labels["app"] = json!(name);
    let mut spec = restricted_pod_spec(extra);
    spec["restartPolicy"] = json!("Always");
    object(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": pod_labels}, "spec": spec}}
    }))
}

fn job(name: &str, labels: &Value, pod_labels: &Value, extra: &Value) -> Job {
    object(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"template": {"metadata": {"labels": pod_labels}, "spec": restricted_pod_spec(extra)}}
    }))
}

// ---------------------------------------------------------------------------------------------
// What the API server answered, and the checks on it
// ---------------------------------------------------------------------------------------------

/// A refusal: the HTTP status when known, and the message.
#[derive(Debug)]
struct Refusal {
    code: Option<u16>,
    message: String,
}

type Outcome = Result<(), Refusal>;

fn api<T>(result: Result<T, kube::Error>) -> Outcome {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(Refusal {
            code: Some(status.code),
            message: status.message.clone(),
        }),
        Err(other) => Err(Refusal {
            code: None,
            message: other.to_string(),
        }),
    }
}

/// What kubectl reported: the status from its `-v=6` response log or its error line, and its
/// error lines as the message.
fn kubectl_outcome(output: &std::io::Result<Output>) -> Outcome {
    let output = match output {
        Ok(output) => output,
        Err(error) => {
            return Err(Refusal {
                code: None,
                message: format!("kubectl did not run: {error}"),
            });
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("kubectl failed:\n{text}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("error") || l.starts_with("Error")
        })
        .collect();
    let message = if errors.is_empty() {
        text.clone()
    } else {
        errors.join("\n")
    };
    let code = if text.contains("403 Forbidden") || message.contains("(Forbidden)") {
        Some(403)
    } else {
        None
    };
    Err(Refusal { code, message })
}

/// The attempts of one test and what went wrong with them; reported all at once.
#[derive(Default)]
struct Findings {
    failures: Vec<String>,
    /// `(what, object)` of each refusal the guard must have recorded on the Tenant.
    recorded: Vec<(String, String)>,
}

impl Findings {
    /// `outcome` must be a 403 whose message mentions Enclave (the guard, by its webhook's name
    /// at least) and one of `names`, what is refused. `object` is the name the Event must give.
    fn refused(&mut self, what: &str, outcome: &Outcome, object: &str, names: &[&str]) {
        eprintln!("attack {what}: {outcome:?}");
        match outcome {
            Ok(()) => self.failures.push(format!("{what}: ALLOWED")),
            Err(refusal) => {
                let lower = refusal.message.to_lowercase();
                if refusal.code != Some(403) {
                    self.failures.push(format!(
                        "{what}: not a 403 ({:?}): {}",
                        refusal.code, refusal.message
                    ));
                } else if !lower.contains("enclave") {
                    self.failures.push(format!(
                        "{what}: a 403 that does not come from Enclave's guard: {}",
                        refusal.message
                    ));
                } else if !names.iter().any(|n| refusal.message.contains(n)) {
                    self.failures.push(format!(
                        "{what}: the refusal names none of {names:?}: {}",
                        refusal.message
                    ));
                }
                if refusal.code == Some(403) && lower.contains("enclave") {
                    self.recorded.push((what.to_string(), object.to_string()));
                }
            }
        }
    }

    /// `outcome` must be allowed.
    fn allowed(&mut self, what: &str, outcome: &Outcome) {
        eprintln!("legitimate {what}: {outcome:?}");
        if let Err(refusal) = outcome {
            self.failures.push(format!(
                "{what}: REFUSED ({:?}): {}",
                refusal.code, refusal.message
            ));
        }
    }

    fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(format!("{what}: {}", detail()));
        }
    }

    /// Each recorded refusal has its Warning Event `AttemptRefused` on `tenant`, naming alice
    /// and the object.
    async fn events_on(&mut self, client: &Client, tenant: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let notes = refusal_notes(client, tenant).await?;
            let missing: Vec<&(String, String)> = self
                .recorded
                .iter()
                .filter(|(_, object)| {
                    !notes
                        .iter()
                        .any(|n| n.contains(ALICE) && n.contains(object.as_str()))
                })
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                for (what, object) in missing {
                    self.failures.push(format!(
                        "{what}: no Warning AttemptRefused Event on Tenant {tenant} naming {ALICE} and {object}; its notes: {notes:#?}"
                    ));
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn report(self) {
        assert!(
            self.failures.is_empty(),
            "{} failure(s):\n- {}",
            self.failures.len(),
            self.failures.join("\n- ")
        );
    }
}

/// Notes of the Warning Events `AttemptRefused` about the Tenant `tenant`, in any namespace.
async fn refusal_notes(client: &Client, tenant: &str) -> Result<Vec<String>> {
    let events = Api::<k8s_openapi::api::events::v1::Event>::all(client.clone())
        .list(
            &ListParams::default()
                .fields(&format!("regarding.kind=Tenant,regarding.name={tenant}")),
        )
        .await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("AttemptRefused") && e.type_.as_deref() == Some("Warning")
        })
        .filter_map(|e| e.note)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// 1. Every kind the operator makes is guarded
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn managed_workload_and_backup_objects_are_guarded() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-mng";
    ensure_tenant(
        &admin,
        tenant,
        json!({
            "access": admins(tenant),
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]},
                      {"name": "data", "allowFrom": ["dmz"]}],
            "workloads": [{"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 1, "ports": [{"port": 443}]}],
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
            "backup": backup(tenant)
        }),
    )
    .await?;
    let (dmz, data) = ("atk-mng-dmz", "atk-mng-data");
    let live: Deployment = wait_for(&admin, dmz, "web").await?;
    wait_for::<PodDisruptionBudget>(&admin, dmz, "web").await?;
    wait_for::<Service>(&admin, dmz, "web").await?;
    let cron: CronJob = wait_for(&admin, data, "enclave-backup").await?;
    wait_for::<ServiceAccount>(&admin, data, "enclave-backup").await?;
    wait_for_access(&admin, dmz).await?;
    wait_for_access(&admin, data).await?;
    let container = |spec: Option<k8s_openapi::api::core::v1::PodSpec>| {
        spec.map(|s| (s.containers[0].name.clone(), s.containers[0].image.clone()))
            .unwrap()
    };
    let (web_container, web_image) = container(live.spec.unwrap().template.spec);
    let (restic_container, restic_image) =
        container(cron.spec.unwrap().job_template.spec.unwrap().template.spec);

    let me = alice(tenant).await?;
    let pp = PatchParams::default();
    let mut findings = Findings::default();
    let deployments = Api::<Deployment>::namespaced(me.clone(), dmz);
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": web_container, "image": "registry.example/evil:1"}]}}}});
    findings.refused(
        "patch the image of the managed Deployment web",
        &api(deployments
            .patch("web", &pp, &Patch::Strategic(&image))
            .await),
        "web",
        &["web"],
    );
    let scaled = kubectl_as_alice(tenant)
        .args(["scale", "deployment/web", "--replicas=5", "-n", dmz])
        .output();
    findings.refused(
        "kubectl scale the managed Deployment web",
        &kubectl_outcome(&scaled),
        "web",
        &["web"],
    );
    findings.refused(
        "delete the managed PodDisruptionBudget web",
        &api(Api::<PodDisruptionBudget>::namespaced(me.clone(), dmz)
            .delete("web", &DeleteParams::default())
            .await),
        "web",
        &["web"],
    );
    let services = Api::<Service>::namespaced(me.clone(), dmz);
    findings.refused(
        "patch the managed Service web to type NodePort",
        &api(services
            .patch(
                "web",
                &pp,
                &Patch::Merge(json!({"spec": {"type": "NodePort"}})),
            )
            .await),
        "web",
        &["web", "NodePort"],
    );
    findings.refused(
        "add externalIPs to the managed Service web",
        &api(services
            .patch(
                "web",
                &pp,
                &Patch::Merge(json!({"spec": {"externalIPs": ["198.51.100.7"]}})),
            )
            .await),
        "web",
        &["web", "externalIPs"],
    );
    let evil_restic = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": restic_container, "image": "registry.example/evil:1"}]}}}}}});
    findings.refused(
        "replace the container image of the managed CronJob enclave-backup",
        &api(Api::<CronJob>::namespaced(me.clone(), data)
            .patch("enclave-backup", &pp, &Patch::Strategic(&evil_restic))
            .await),
        "enclave-backup",
        &["enclave-backup"],
    );
    findings.refused(
        "delete the managed ServiceAccount enclave-backup",
        &api(Api::<ServiceAccount>::namespaced(me.clone(), data)
            .delete("enclave-backup", &DeleteParams::default())
            .await),
        "enclave-backup",
        &["enclave-backup"],
    );

    // Nothing changed.
    let now: Deployment = Api::namespaced(admin.clone(), dmz).get("web").await?;
    let spec = now.spec.unwrap();
    let (_, image_now) = container(spec.template.spec);
    findings.check("the Deployment's image", image_now == web_image, || {
        format!("now {image_now:?}")
    });
    findings.check(
        "the Deployment's replicas (capacity 1 + 1)",
        spec.replicas == Some(2),
        || format!("now {:?}", spec.replicas),
    );
    let service: Service = Api::namespaced(admin.clone(), dmz).get("web").await?;
    let service = service.spec.unwrap();
    findings.check(
        "the Service's type and externalIPs",
        service.type_.as_deref().unwrap_or("ClusterIP") == "ClusterIP"
            && service.external_ips.is_none(),
        || format!("now {:?} {:?}", service.type_, service.external_ips),
    );
    findings.check(
        "the PodDisruptionBudget",
        Api::<PodDisruptionBudget>::namespaced(admin.clone(), dmz)
            .get_opt("web")
            .await?
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
        || "deleted".into(),
    );
    let cron: CronJob = Api::namespaced(admin.clone(), data)
        .get("enclave-backup")
        .await?;
    let (_, restic_now) = container(cron.spec.unwrap().job_template.spec.unwrap().template.spec);
    findings.check("the CronJob's image", restic_now == restic_image, || {
        format!("now {restic_now:?}")
    });
    findings.check(
        "the ServiceAccount",
        Api::<ServiceAccount>::namespaced(admin.clone(), data)
            .get_opt("enclave-backup")
            .await?
            .is_some_and(|s| s.metadata.deletion_timestamp.is_none()),
        || "deleted".into(),
    );
    findings.events_on(&admin, tenant).await?;
    findings.report();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Forged managed-by labels
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn forged_managed_by_labels_are_refused_and_recorded_on_the_namespace_owner() -> Result<()> {
    let admin = env().client().await?;
    let (a, b) = ("atk-forge", "atk-forge-b");
    ensure_tenant(
        &admin,
        a,
        json!({"access": admins(a), "zones": [{"name": "app"}]}),
    )
    .await?;
    ensure_tenant(&admin, b, json!({"zones": [{"name": "app"}]})).await?;
    wait_ready(&admin, a).await?;
    wait_ready(&admin, b).await?;
    let ns = "atk-forge-app";
    wait_for_access(&admin, ns).await?;

    let me = alice(a).await?;
    let pp = PostParams::default();
    let mut findings = Findings::default();
    let forged_for_b =
        json!({"app.kubernetes.io/managed-by": "enclave-operator", "enclave.dev/tenant": b});
    let cm: ConfigMap = object(
        json!({"metadata": {"name": "forged-cm", "labels": forged_for_b}, "data": {"k": "v"}}),
    );
    findings.refused(
        "create a ConfigMap labelled managed-by enclave-operator and enclave.dev/tenant of another tenant",
        &api(Api::<ConfigMap>::namespaced(me.clone(), ns).create(&pp, &cm).await),
        "forged-cm",
        &["forged-cm", "managed-by", "enclave-operator"],
    );
    let forged = json!({"app.kubernetes.io/managed-by": "enclave-operator"});
    let forged_job = job("forged-job", &forged, &json!({}), &json!({}));
    findings.refused(
        "create a Job labelled managed-by enclave-operator",
        &api(Api::<Job>::namespaced(me.clone(), ns)
            .create(&pp, &forged_job)
            .await),
        "forged-job",
        &["forged-job", "managed-by", "enclave-operator"],
    );
    // Recorded on the namespace's owner, A...
    findings.events_on(&admin, a).await?;
    // ...and on no tenant the forged label names.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_b = refusal_notes(&admin, b).await?;
    findings.check(
        "no AttemptRefused Event on the tenant named by the forged label",
        !on_b.iter().any(|n| n.contains("forged-")),
        || format!("Tenant {b} has: {on_b:#?}"),
    );
    findings.check(
        "no forged ConfigMap",
        Api::<ConfigMap>::namespaced(admin.clone(), ns)
            .get_opt("forged-cm")
            .await?
            .is_none(),
        || "it exists".into(),
    );
    findings.report();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Backup identity
// ---------------------------------------------------------------------------------------------

/// A tenant with a volume and backups in its `data` zone, alice its admin, and the objects the
/// backup pods need in place; returns the zone's namespace.
async fn backup_tenant(admin: &Client, tenant: &str) -> Result<String> {
    ensure_tenant(
        admin,
        tenant,
        json!({
            "access": admins(tenant),
            "zones": [{"name": "data"}],
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
            "backup": backup(tenant)
        }),
    )
    .await?;
    let ns = format!("{tenant}-data");
    wait_for::<CronJob>(admin, &ns, "enclave-backup").await?;
    wait_for::<ServiceAccount>(admin, &ns, "enclave-backup").await?;
    wait_for::<ConfigMap>(admin, &ns, "enclave-operator-ca").await?;
    wait_for_access(admin, &ns).await?;
    Ok(ns)
}

#[tokio::test]
async fn tenant_admin_cannot_take_the_backup_identity() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-bid";
    let ns = backup_tenant(&admin, tenant).await?;
    let me = alice(tenant).await?;
    let pp = PostParams::default();
    let mut findings = Findings::default();
    let as_backup = json!({"serviceAccountName": "enclave-backup"});
    let backup_label = json!({"enclave.dev/backup": "true"});
    let none = json!({});
    let pods = Api::<Pod>::namespaced(me.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(me.clone(), &ns);
    let jobs = Api::<Job>::namespaced(me.clone(), &ns);
    findings.refused(
        "create a Pod running as enclave-backup",
        &api(pods.create(&pp, &pod("borrow-sa", &none, &as_backup)).await),
        "borrow-sa",
        &["enclave-backup"],
    );
    findings.refused(
        "create a Pod labelled enclave.dev/backup",
        &api(pods
            .create(&pp, &pod("borrow-label", &backup_label, &none))
            .await),
        "borrow-label",
        &["enclave.dev/backup"],
    );
    findings.refused(
        "create a Deployment whose pods run as enclave-backup",
        &api(deployments
            .create(&pp, &deployment("borrow-sa-deploy", &none, &as_backup))
            .await),
        "borrow-sa-deploy",
        &["enclave-backup"],
    );
    findings.refused(
        "create a Deployment whose pods are labelled enclave.dev/backup",
        &api(deployments
            .create(
                &pp,
                &deployment("borrow-label-deploy", &backup_label, &none),
            )
            .await),
        "borrow-label-deploy",
        &["enclave.dev/backup"],
    );
    findings.refused(
        "create a Job whose pods run as enclave-backup",
        &api(jobs
            .create(&pp, &job("borrow-sa-job", &none, &none, &as_backup))
            .await),
        "borrow-sa-job",
        &["enclave-backup"],
    );
    findings.refused(
        "create a Job whose pods are labelled enclave.dev/backup",
        &api(jobs
            .create(&pp, &job("borrow-label-job", &none, &backup_label, &none))
            .await),
        "borrow-label-job",
        &["enclave.dev/backup"],
    );
    let from_cron = kubectl_as_alice(tenant)
        .args([
            "create",
            "job",
            "--from=cronjob/enclave-backup",
            "alice-backup-now",
            "-n",
            &ns,
        ])
        .output();
    findings.refused(
        "kubectl create job --from=cronjob/enclave-backup",
        &kubectl_outcome(&from_cron),
        "alice-backup-now",
        &[
            "enclave-backup",
            "enclave.dev/backup",
            "managed by Enclave",
            "managed-by",
        ],
    );
    // Nothing of it runs.
    let left = Api::<Pod>::namespaced(admin.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    let names: Vec<String> = left
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .filter(|n| n.starts_with("borrow-") || n.starts_with("alice-backup-now"))
        .collect();
    findings.check("no pod of the attempts", names.is_empty(), || {
        format!("pods: {names:?}")
    });
    findings.events_on(&admin, tenant).await?;
    findings.report();
    Ok(())
}

#[tokio::test]
async fn tenant_admin_still_runs_ordinary_pods_deployments_jobs_and_config_maps() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-bid";
    let ns = backup_tenant(&admin, tenant).await?;
    let me = alice(tenant).await?;
    let pp = PostParams::default();
    let mut findings = Findings::default();
    let none = json!({});
    let mine = json!({"app": "mine"});
    findings.allowed(
        "create an ordinary Pod",
        &api(Api::<Pod>::namespaced(me.clone(), &ns)
            .create(&pp, &pod("ordinary-pod", &mine, &none))
            .await),
    );
    findings.allowed(
        "create an ordinary Deployment",
        &api(Api::<Deployment>::namespaced(me.clone(), &ns)
            .create(&pp, &deployment("ordinary-deploy", &none, &none))
            .await),
    );
    let config: ConfigMap = object(
        json!({"metadata": {"name": "ordinary-config", "labels": mine}, "data": {"k": "v"}}),
    );
    findings.allowed(
        "create an ordinary ConfigMap",
        &api(Api::<ConfigMap>::namespaced(me.clone(), &ns)
            .create(&pp, &config)
            .await),
    );
    findings.allowed(
        "create an ordinary Job",
        &api(Api::<Job>::namespaced(me.clone(), &ns)
            .create(&pp, &job("ordinary-job", &none, &none, &none))
            .await),
    );
    findings.report();
    Ok(())
}

/// Runs the backup CronJob now as cluster admin and returns its pod's name. With no volume for
/// the claim, the pod stays Pending (unscheduled): kwok would complete a scheduled Job pod at
/// once, and kubectl refuses to exec into a completed pod before asking the API server.
async fn backup_pod(admin: &Client, ns: &str, job: &str) -> Result<String> {
    let created = env()
        .kubectl()
        .args([
            "create",
            "job",
            "--from=cronjob/enclave-backup",
            job,
            "-n",
            ns,
        ])
        .output()?;
    anyhow::ensure!(
        created.status.success()
            || String::from_utf8_lossy(&created.stderr).contains("AlreadyExists"),
        "kubectl create job: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let pods = Api::<Pod>::namespaced(admin.clone(), ns);
    eventually(&format!("the pod of Job {job}"), WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await?;
        Ok(list.items.into_iter().find_map(|p| p.metadata.name))
    })
    .await
}

/// A `CONNECT` request (`POST pods/<pod>/<subresource>?<query>`) as alice, without the
/// protocol upgrade: admission answers it all the same, before any kubelet is dialled.
async fn connect(
    tenant: &str,
    ns: &str,
    pod: &str,
    subresource: &str,
    query: &str,
) -> Result<Outcome> {
    let mut request = kube::core::Request::new(format!("/api/v1/namespaces/{ns}/pods"))
        .create_subresource(subresource, pod, &PostParams::default(), vec![])?;
    *request.uri_mut() = format!("/api/v1/namespaces/{ns}/pods/{pod}/{subresource}?{query}")
        .parse()
        .context("uri")?;
    Ok(api(alice(tenant).await?.request_text(request).await))
}

/// As cluster admin, a Role giving alice `pods/attach` in `ns`, which no tenant role grants.
async fn grant_attach(admin: &Client, ns: &str) -> Result<()> {
    let role: k8s_openapi::api::rbac::v1::Role = object(json!({
        "metadata": {"name": "atk-attach"},
        "rules": [{"apiGroups": [""], "resources": ["pods/attach"], "verbs": ["get", "create"]}]
    }));
    tolerate_exists(
        Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &role)
            .await,
    )?;
    let binding: RoleBinding = object(json!({
        "metadata": {"name": "atk-attach"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "atk-attach"},
        "subjects": [{"kind": "User", "name": ALICE, "apiGroup": "rbac.authorization.k8s.io"}]
    }));
    tolerate_exists(
        Api::<RoleBinding>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &binding)
            .await,
    )
}

#[tokio::test]
async fn tenant_admin_cannot_enter_a_backup_pod() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-exec";
    let ns = backup_tenant(&admin, tenant).await?;
    let pod_name = backup_pod(&admin, &ns, "atk-exec-run").await?;
    let pod: Pod = Api::namespaced(admin.clone(), &ns).get(&pod_name).await?;
    let status = pod.status.clone().unwrap_or_default();
    eprintln!(
        "backup pod {pod_name}: phase {:?}, node {:?}, service account {:?}",
        status.phase,
        pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        pod.spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
    );
    let mut findings = Findings::default();
    // What reaching the kubelet side looks like: the guard must answer before it.
    let past_admission = |outcome: &Outcome| {
        outcome.as_ref().err().is_some_and(|r| {
            r.message.contains("does not have a host assigned")
                || r.message.contains("dial")
                || r.message.contains("kubelet")
        })
    };

    let exec = kubectl_as_alice(tenant)
        .args(["exec", &pod_name, "-n", &ns, "-c", "restic", "--", "true"])
        .output();
    let exec = kubectl_outcome(&exec);
    findings.check(
        "kubectl exec reached no kubelet",
        !past_admission(&exec),
        || format!("{exec:?}"),
    );
    findings.refused(
        "kubectl exec into the backup pod",
        &exec,
        &pod_name,
        &[&pod_name, "enclave-backup", "backup"],
    );

    let attach = kubectl_as_alice(tenant)
        .args(["attach", &pod_name, "-n", &ns, "-c", "restic"])
        .output();
    let attach = kubectl_outcome(&attach);
    findings.check(
        "kubectl attach reached no kubelet",
        !past_admission(&attach),
        || format!("{attach:?}"),
    );
    // The tenant roles grant no pods/attach: RBAC may refuse it before the guard sees it,
    // which refuses it just as well.
    let by_rbac = attach.as_ref().err().is_some_and(|r| {
        r.code == Some(403) && r.message.contains("cannot create resource \"pods/attach\"")
    });
    if by_rbac {
        eprintln!("kubectl attach was refused by RBAC (no pods/attach in the tenant roles)");
        // Even were the platform to grant attach, the guard refuses it: a Role of the
        // cluster admin's giving alice pods/attach in the zone.
        grant_attach(&admin, &ns).await?;
        let granted = eventually("alice granted pods/attach", WAIT, || async {
            let attach = kubectl_as_alice(tenant)
                .args(["attach", &pod_name, "-n", &ns, "-c", "restic"])
                .output();
            let attach = kubectl_outcome(&attach);
            let still_rbac = attach
                .as_ref()
                .err()
                .is_some_and(|r| r.message.contains("cannot create resource \"pods/attach\""));
            Ok((!still_rbac).then_some(attach))
        })
        .await?;
        findings.check(
            "kubectl attach (RBAC granting it) reached no kubelet",
            !past_admission(&granted),
            || format!("{granted:?}"),
        );
        findings.refused(
            "kubectl attach to the backup pod, RBAC granting pods/attach",
            &granted,
            &pod_name,
            &[&pod_name, "enclave-backup", "backup"],
        );
    } else {
        findings.refused(
            "kubectl attach to the backup pod",
            &attach,
            &pod_name,
            &[&pod_name, "enclave-backup", "backup"],
        );
    }

    // The requests themselves, as alice, for their exact status: kubectl port-forward refuses
    // a pod that is not Running before it asks the API server.
    for (what, subresource, query) in [
        (
            "exec into the backup pod (POST pods/exec)",
            "exec",
            "command=true&container=restic&stdout=true",
        ),
        (
            "port-forward to the backup pod (POST pods/portforward)",
            "portforward",
            "ports=8080",
        ),
    ] {
        let outcome = connect(tenant, &ns, &pod_name, subresource, query).await?;
        findings.check(
            &format!("{what} reached no kubelet"),
            !past_admission(&outcome),
            || format!("{outcome:?}"),
        );
        findings.refused(
            what,
            &outcome,
            &pod_name,
            &[&pod_name, "enclave-backup", "backup"],
        );
    }
    findings.events_on(&admin, tenant).await?;
    findings.report();
    Ok(())
}

#[tokio::test]
async fn tenant_admin_still_execs_into_ordinary_pods() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-exec";
    let ns = backup_tenant(&admin, tenant).await?;
    // Unschedulable, so the exec stops at the kubelet side after admission, a known error.
    let pending = pod(
        "ordinary-pending",
        &json!({"app": "mine"}),
        &json!({"nodeSelector": {"atk.enclave.dev/nowhere": "true"}}),
    );
    tolerate_exists(
        Api::<Pod>::namespaced(alice(tenant).await?, &ns)
            .create(&PostParams::default(), &pending)
            .await,
    )?;
    let exec = kubectl_as_alice(tenant)
        .args(["exec", "ordinary-pending", "-n", &ns, "--", "true"])
        .output();
    let exec = kubectl_outcome(&exec);
    eprintln!("exec into an ordinary pod: {exec:?}");
    assert!(
        exec.as_ref()
            .err()
            .is_some_and(|r| r.message.contains("does not have a host assigned")),
        "alice's exec into her own pod must pass admission (and fail only for want of a node): {exec:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. The credentials broker
// ---------------------------------------------------------------------------------------------

fn create_token(ns: &str, bound_pod: Option<&str>) -> Result<String> {
    let mut cmd = env().kubectl();
    cmd.args([
        "create",
        "token",
        "enclave-backup",
        "--audience",
        "enclave-backup",
        "-n",
        ns,
    ]);
    if let Some(pod) = bound_pod {
        cmd.args(["--bound-object-kind", "Pod", "--bound-object-name", pod]);
    }
    let output = cmd.output()?;
    anyhow::ensure!(
        output.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

fn refused_by_broker(
    findings: &mut Findings,
    what: &str,
    result: &Result<credentials::Credentials, credentials::FetchError>,
    names: &[&str],
) {
    eprintln!("broker, {what}: {result:?}");
    match result {
        Err(credentials::FetchError::Refused {
            status: 403,
            message,
        }) => {
            let lower = message.to_lowercase();
            if !names.iter().any(|n| lower.contains(n)) {
                findings.failures.push(format!(
                    "{what}: the refusal names none of {names:?}: {message}"
                ));
            }
        }
        other => findings
            .failures
            .push(format!("{what}: not refused with 403: {other:?}")),
    }
}

#[tokio::test]
async fn broker_answers_only_a_pod_bound_token_of_an_active_tenant() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-brk";
    let ns = backup_tenant(&admin, tenant).await?;
    let cron: CronJob = wait_for(&admin, &ns, "enclave-backup").await?;
    let args = cron
        .spec
        .and_then(|s| s.job_template.spec)
        .and_then(|j| j.template.spec)
        .and_then(|p| p.init_containers)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.args)
        .context("init container args")?;
    let url = args
        .iter()
        .skip_while(|a| *a != "--url")
        .nth(1)
        .cloned()
        .context("--url")?;
    let ca = wait_for::<ConfigMap>(&admin, &ns, "enclave-operator-ca")
        .await?
        .data
        .and_then(|d| d.get("ca.crt").cloned())
        .context("ca.crt")?;
    let secrets = Api::<Secret>::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let password_secret = format!("enclave-backup-{tenant}");
    let password = eventually("the repository password", WAIT, || async {
        Ok(secrets
            .get_opt(&password_secret)
            .await?
            .and_then(|s| s.data?.get("password").cloned()))
    })
    .await?;
    let password = String::from_utf8(password.0)?;
    let pod = backup_pod(&admin, &ns, "atk-brk-run").await?;
    let mut findings = Findings::default();

    // The real backup pod's token: answered with its tenant's secrets.
    let bound = create_token(&ns, Some(&pod))?;
    let answered = eventually("the broker's answer", Duration::from_secs(30), || async {
        match credentials::fetch(&url, &bound, &ca).await {
            Err(credentials::FetchError::Refused { status: 503, .. }) => Ok(None),
            other => Ok(Some(other)),
        }
    })
    .await?;
    match &answered {
        Ok(got) => findings.check(
            "the pod-bound token gets its tenant's password and store credentials",
            got.restic_password == password
                && got.access_key_id == format!("{tenant}-key-id")
                && got.secret_access_key == format!("{tenant}-secret"),
            || "other credentials".into(),
        ),
        Err(error) => findings.failures.push(format!(
            "a token bound to the backup Job's pod {pod}: REFUSED: {error}"
        )),
    }

    // The same service account and audience, but no pod: refused.
    let unbound = create_token(&ns, None)?;
    let result = credentials::fetch(&url, &unbound, &ca).await;
    refused_by_broker(
        &mut findings,
        "a token of enclave-backup bound to no pod",
        &result,
        &["pod", "bound"],
    );

    // The pod's token once the tenant is suspended: refused.
    Api::<Tenant>::all(admin.clone())
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"lifecycle": {"state": "Suspended"}}})),
        )
        .await?;
    let result = eventually("the broker's refusal", Duration::from_secs(30), || async {
        let result = credentials::fetch(&url, &bound, &ca).await;
        Ok(result.is_err().then_some(result))
    })
    .await
    .unwrap_or_else(|_| {
        Err(credentials::FetchError::Request(
            "still answered with the credentials 30 s after the suspension".into(),
        ))
    });
    refused_by_broker(
        &mut findings,
        "the pod-bound token of a Suspended tenant",
        &result,
        &["suspend", "not active", "stopped"],
    );
    findings.report();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Managed claims
// ---------------------------------------------------------------------------------------------

/// A tenant whose volume `db` is a claim bound to a volume (so that it can be grown).
async fn claim_tenant(admin: &Client, tenant: &str) -> Result<String> {
    ensure_tenant(
        admin,
        tenant,
        json!({
            "access": admins(tenant),
            "zones": [{"name": "data"}],
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}]
        }),
    )
    .await?;
    let ns = format!("{tenant}-data");
    let claim: PersistentVolumeClaim = wait_for(admin, &ns, "db").await?;
    let class = claim
        .spec
        .and_then(|s| s.storage_class_name)
        .context("storage class")?;
    let pv: PersistentVolume = object(json!({
        "metadata": {"name": format!("pv-{tenant}")},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": class,
                 "csi": {"driver": "driver.longhorn.io", "volumeHandle": tenant},
                 "claimRef": {"namespace": ns, "name": "db"}}
    }));
    tolerate_exists(
        Api::<PersistentVolume>::all(admin.clone())
            .create(&PostParams::default(), &pv)
            .await,
    )?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), &ns);
    eventually("db Bound", WAIT, || async {
        let c = claims.get("db").await?;
        Ok((c.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
    })
    .await?;
    wait_for_access(admin, &ns).await?;
    Ok(ns)
}

#[tokio::test]
async fn managed_claims_are_guarded() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-pvc";
    let ns = claim_tenant(&admin, tenant).await?;
    let me = alice(tenant).await?;
    let pp = PatchParams::default();
    let mut findings = Findings::default();
    // Something alice owns, which the garbage collector would take the claim with.
    let owner: ConfigMap = object(json!({"metadata": {"name": "claim-owner"}}));
    tolerate_exists(
        Api::<ConfigMap>::namespaced(me.clone(), &ns)
            .create(&PostParams::default(), &owner)
            .await,
    )?;
    let owner_uid = Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .get("claim-owner")
        .await?
        .metadata
        .uid
        .context("uid")?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(me.clone(), &ns);
    let attempts = [
        (
            "add an ownerReference to the managed claim db",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "claim-owner", "uid": owner_uid}]}}),
            vec!["db", "ownerReferences", "owner"],
        ),
        (
            "remove the managed-by label of the managed claim db",
            json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}}),
            vec!["db", "managed-by"],
        ),
        (
            "set enclave.dev/purge-after on the managed claim db",
            json!({"metadata": {"annotations": {"enclave.dev/purge-after": "2000-01-01T00:00:00Z"}}}),
            vec!["db", "purge-after"],
        ),
        (
            "grow spec.resources.requests.storage of the managed claim db",
            json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}),
            vec!["db", "storage"],
        ),
    ];
    for (what, patch, names) in &attempts {
        findings.refused(
            what,
            &api(claims.patch("db", &pp, &Patch::Merge(patch)).await),
            "db",
            names,
        );
    }
    let claim = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), &ns)
        .get("db")
        .await?;
    let meta = &claim.metadata;
    findings.check(
        "the claim unchanged",
        meta.owner_references.as_ref().is_none_or(Vec::is_empty)
            && meta
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                .map(String::as_str)
                == Some("enclave-operator")
            && meta
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key("enclave.dev/purge-after"))
            && claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
                .map(|q| q.0.as_str())
                == Some("1Gi"),
        || {
            format!(
                "ownerReferences {:?}, labels {:?}, annotations {:?}, requests {:?}",
                meta.owner_references,
                meta.labels,
                meta.annotations,
                claim.spec.as_ref().and_then(|s| s.resources.clone())
            )
        },
    );
    findings.events_on(&admin, tenant).await?;
    findings.report();
    Ok(())
}

#[tokio::test]
async fn tenant_admin_creates_and_deletes_her_own_claim() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-pvc";
    let ns = claim_tenant(&admin, tenant).await?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(alice(tenant).await?, &ns);
    let mut findings = Findings::default();
    let mine: PersistentVolumeClaim = object(json!({
        "metadata": {"name": "scratch"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }));
    findings.allowed(
        "create her own claim",
        &api(claims.create(&PostParams::default(), &mine).await),
    );
    findings.allowed(
        "delete her own claim",
        &api(claims.delete("scratch", &DeleteParams::default()).await),
    );
    findings.report();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 6. Access
// ---------------------------------------------------------------------------------------------

fn binding(name: &str, role: &str, kind: &str, subject: &str) -> RoleBinding {
    object(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": kind, "name": subject, "apiGroup": "rbac.authorization.k8s.io"}]
    }))
}

#[tokio::test]
async fn tenant_admin_cannot_grant_the_admin_role() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-rb";
    ensure_tenant(
        &admin,
        tenant,
        json!({"access": admins(tenant), "zones": [{"name": "app"}]}),
    )
    .await?;
    wait_ready(&admin, tenant).await?;
    let ns = "atk-rb-app";
    wait_for_access(&admin, ns).await?;
    let bindings = Api::<RoleBinding>::namespaced(alice(tenant).await?, ns);
    let pp = PostParams::default();
    let mut findings = Findings::default();
    findings.refused(
        "bind enclave-tenant-admin to bob",
        &api(bindings
            .create(
                &pp,
                &binding("bob-admin", "enclave-tenant-admin", "User", "bob"),
            )
            .await),
        "bob-admin",
        &["enclave-tenant-admin"],
    );
    findings.refused(
        "bind enclave-tenant-admin to system:authenticated",
        &api(bindings
            .create(
                &pp,
                &binding(
                    "everyone-admin",
                    "enclave-tenant-admin",
                    "Group",
                    "system:authenticated",
                ),
            )
            .await),
        "everyone-admin",
        &["enclave-tenant-admin"],
    );
    findings.events_on(&admin, tenant).await?;
    findings.report();
    Ok(())
}

#[tokio::test]
async fn tenant_admin_grants_the_viewer_role() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-rb";
    ensure_tenant(
        &admin,
        tenant,
        json!({"access": admins(tenant), "zones": [{"name": "app"}]}),
    )
    .await?;
    wait_ready(&admin, tenant).await?;
    let ns = "atk-rb-app";
    wait_for_access(&admin, ns).await?;
    let bindings = Api::<RoleBinding>::namespaced(alice(tenant).await?, ns);
    let mut findings = Findings::default();
    findings.allowed(
        "bind enclave-tenant-viewer to carol",
        &api(bindings
            .create(
                &PostParams::default(),
                &binding("carol-viewer", "enclave-tenant-viewer", "User", "carol"),
            )
            .await),
    );
    findings.report();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7. Services
// ---------------------------------------------------------------------------------------------

async fn service_tenant(admin: &Client, tenant: &str) -> Result<()> {
    ensure_tenant(
        admin,
        tenant,
        json!({
            "access": admins(tenant),
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]},
                      {"name": "app", "ports": [{"port": 8080}], "allowFrom": ["dmz"]}]
        }),
    )
    .await?;
    wait_ready(admin, tenant).await?;
    wait_for_access(admin, &format!("{tenant}-dmz")).await?;
    wait_for_access(admin, &format!("{tenant}-app")).await
}

fn service(name: &str, spec: &Value) -> Service {
    object(json!({"metadata": {"name": name}, "spec": spec}))
}

#[tokio::test]
async fn services_cannot_open_what_the_zones_do_not() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-svc";
    service_tenant(&admin, tenant).await?;
    let me = alice(tenant).await?;
    let pp = PostParams::default();
    let mut findings = Findings::default();
    let external_name = json!({"type": "ExternalName", "externalName": "evil.example"});
    for zone in ["dmz", "app"] {
        let ns = format!("{tenant}-{zone}");
        let services = Api::<Service>::namespaced(me.clone(), &ns);
        let port = if zone == "dmz" { 443 } else { 8080 };
        let name = format!("ext-name-{zone}");
        findings.refused(
            &format!("create an ExternalName Service in {zone}"),
            &api(services.create(&pp, &service(&name, &external_name)).await),
            &name,
            &["ExternalName"],
        );
        let name = format!("ext-ips-{zone}");
        let external_ips = json!({"ports": [{"port": port}], "externalIPs": ["198.51.100.7"]});
        findings.refused(
            &format!("create a Service with externalIPs in {zone}"),
            &api(services.create(&pp, &service(&name, &external_ips)).await),
            &name,
            &["externalIPs"],
        );
    }
    // app is not internet-facing.
    let services = Api::<Service>::namespaced(me.clone(), "atk-svc-app");
    for kind in ["NodePort", "LoadBalancer"] {
        let name = format!("{}-app", kind.to_lowercase());
        findings.refused(
            &format!("create a {kind} Service in the zone app (exposure not Internet)"),
            &api(services
                .create(
                    &pp,
                    &service(&name, &json!({"type": kind, "ports": [{"port": 8080}]})),
                )
                .await),
            &name,
            &[kind],
        );
    }
    findings.events_on(&admin, tenant).await?;
    findings.report();
    Ok(())
}

#[tokio::test]
async fn tenant_admin_creates_cluster_ip_services() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-svc";
    service_tenant(&admin, tenant).await?;
    let me = alice(tenant).await?;
    let mut findings = Findings::default();
    for (zone, port) in [("dmz", 443), ("app", 8080)] {
        findings.allowed(
            &format!("create a ClusterIP Service in {zone}"),
            &api(
                Api::<Service>::namespaced(me.clone(), &format!("{tenant}-{zone}"))
                    .create(
                        &PostParams::default(),
                        &service(
                            "internal",
                            &json!({"type": "ClusterIP", "selector": {"app": "x"}, "ports": [{"port": port}]}),
                        ),
                    )
                    .await,
            ),
        );
    }
    findings.report();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 8. Retention after deletion
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retention_cannot_be_shortened_after_deletion() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-ret";
    let tenants = Api::<Tenant>::all(admin.clone());
    ensure_tenant(
        &admin,
        tenant,
        json!({"zones": [{"name": "app"}, {"name": "data", "allowFrom": ["app"]}],
               "lifecycle": {"retention": "2m"}}),
    )
    .await?;
    wait_ready(&admin, tenant).await?;
    tenants.delete(tenant, &DeleteParams::default()).await?;
    let deadline = eventually("purgeAfter of the deleted tenant", WAIT, || async {
        let t = tenants.get(tenant).await?;
        Ok(t.metadata
            .deletion_timestamp
            .and(t.status.and_then(|s| s.purge_after))
            .map(|p| p.0))
    })
    .await?;
    eprintln!("deleted; purgeAfter {deadline}");

    // A deleting object can still be updated: the API server may take this, or refuse it.
    let shortened = tenants
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"lifecycle": {"retention": "1s"}}})),
        )
        .await;
    eprintln!(
        "patching spec.lifecycle.retention to 1s: {:?}",
        shortened
            .as_ref()
            .map(|t| t.spec.lifecycle.retention.clone())
    );

    let namespaces = Api::<Namespace>::all(admin.clone());
    let until = Instant::now() + Duration::from_secs(10);
    let mut failures = Vec::new();
    while Instant::now() < until && failures.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = tenants.get(tenant).await?;
        let status = t.status.unwrap_or_default();
        match status.purge_after.map(|p| p.0) {
            Some(now) if now < deadline => failures.push(format!(
                "status.purgeAfter moved earlier: {deadline} -> {now}"
            )),
            None => failures.push("status.purgeAfter cleared".to_string()),
            Some(_) => {}
        }
        if status.phase == Some(Phase::Purged) {
            failures.push("the tenant was purged".into());
        }
        for zone in ["app", "data"] {
            let name = format!("{tenant}-{zone}");
            match namespaces.get_opt(&name).await? {
                Some(ns) if ns.metadata.deletion_timestamp.is_none() => {}
                Some(_) => failures.push(format!("namespace {name} is being deleted")),
                None => failures.push(format!("namespace {name} is gone")),
            }
        }
    }
    assert!(
        Timestamp::now() < deadline,
        "the test outlived the 2m retention"
    );
    assert!(
        failures.is_empty(),
        "retention shortened after deletion:\n{}",
        failures.join("\n")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 9. Access follows the spec and the lifecycle
// ---------------------------------------------------------------------------------------------

/// Whether `client` may create a ConfigMap in `namespace` (dry run: nothing is kept).
async fn may_write(client: &Client, namespace: &str) -> Result<bool> {
    let probe: k8s_openapi::api::core::v1::ConfigMap =
        object(json!({"metadata": {"generateName": "probe-"}}));
    match Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), namespace)
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &probe,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[tokio::test]
async fn access_goes_with_the_spec_and_while_the_tenant_is_not_running() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-acc";
    let tenants = Api::<Tenant>::all(admin.clone());
    let group = json!({"kind": "Group", "name": "atk-acc-admins"});
    let dave = json!({"kind": "User", "name": "dave"});
    let vera = json!({"kind": "User", "name": "vera"});
    ensure_tenant(
        &admin,
        tenant,
        json!({"access": {"admins": [group, dave], "viewers": [vera]}, "zones": [{"name": "app"}]}),
    )
    .await?;
    wait_ready(&admin, tenant).await?;
    let ns = "atk-acc-app";
    wait_for_access(&admin, ns).await?;
    let alice = alice(tenant).await?;
    let bindings = Api::<RoleBinding>::namespaced(alice.clone(), ns);
    for (name, role, subject) in [
        ("dave-member", "enclave-tenant-member", "dave"),
        ("erin-viewer", "enclave-tenant-viewer", "erin"),
    ] {
        tolerate_exists(
            bindings
                .create(
                    &PostParams::default(),
                    &binding(name, role, "User", subject),
                )
                .await,
        )?;
    }
    // What tenants granted is on record.
    eventually("both tenant-made bindings in status", WAIT, || async {
        let listed = tenants
            .get(tenant)
            .await?
            .status
            .unwrap_or_default()
            .tenant_bindings;
        Ok((listed.len() == 2
            && listed.iter().any(|b| b.contains("dave-member"))
            && listed.iter().any(|b| b.contains("erin-viewer")))
        .then_some(()))
    })
    .await?;
    // One more for dave, made just before he leaves: the operator's caches may not hold it
    // yet, and it goes all the same.
    bindings
        .create(
            &PostParams::default(),
            &binding("dave-late", "enclave-tenant-viewer", "User", "dave"),
        )
        .await?;
    // dave leaves spec.access: what alice granted him goes with his admin rights; erin's stays.
    tenants
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"access": {"admins": [group], "viewers": [vera]}}})),
        )
        .await?;
    let cluster_bindings = Api::<RoleBinding>::namespaced(admin.clone(), ns);
    eventually("dave's bindings revoked", WAIT, || async {
        Ok((cluster_bindings.get_opt("dave-member").await?.is_none()
            && cluster_bindings.get_opt("dave-late").await?.is_none())
        .then_some(()))
    })
    .await?;
    assert!(
        cluster_bindings.get_opt("erin-viewer").await?.is_some(),
        "erin's binding stays"
    );
    eventually("status lists erin's binding only", WAIT, || async {
        let listed = tenants
            .get(tenant)
            .await?
            .status
            .unwrap_or_default()
            .tenant_bindings;
        Ok((listed.len() == 1 && listed[0].contains("erin-viewer")).then_some(()))
    })
    .await?;
    // Suspended: the admins lose their rights, the viewers keep reading, tenant-made bindings go.
    tenants
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"lifecycle": {"state": "Suspended"}}})),
        )
        .await?;
    eventually(
        "only the viewers' binding left while suspended",
        WAIT,
        || async {
            let names: Vec<String> = cluster_bindings
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|b| b.metadata.name)
                .collect();
            Ok((names == ["enclave-viewers"]).then_some(()))
        },
    )
    .await?;
    assert!(
        !may_write(&alice, ns).await?,
        "alice still writes in a suspended tenant"
    );
    // Active again: alice's rights come back with the spec.
    tenants
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"lifecycle": {"state": "Active"}}})),
        )
        .await?;
    eventually("alice writes again once active", WAIT, || async {
        Ok(may_write(&alice, ns).await?.then_some(()))
    })
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 10. Ingresses and objects made before the operator's
// ---------------------------------------------------------------------------------------------

fn ingress(
    name: &str,
    host: Option<&str>,
    annotations: &Value,
) -> k8s_openapi::api::networking::v1::Ingress {
    object(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 443}}}}]}}]}
    }))
}

#[tokio::test]
async fn ingresses_serve_only_the_tenants_own_names() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-ing";
    ensure_tenant(
        &admin,
        tenant,
        json!({"access": admins(tenant),
               "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}],
               "tls": {"dnsNames": ["shop.atk-ing.example"]}}),
    )
    .await?;
    let ns = "atk-ing-dmz";
    wait_for_access(&admin, ns).await?;
    let ingresses =
        Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(alice(tenant).await?, ns);
    let pp = PostParams::default();
    let mut findings = Findings::default();
    findings.refused(
        "an Ingress for another tenant's host",
        &api(ingresses
            .create(
                &pp,
                &ingress("steal", Some("shop.victim.example"), &json!({})),
            )
            .await),
        "steal",
        &["shop.victim.example"],
    );
    findings.refused(
        "an Ingress catching every host",
        &api(ingresses
            .create(&pp, &ingress("catch-all", None, &json!({})))
            .await),
        "catch-all",
        &["no host"],
    );
    findings.refused(
        "an Ingress injecting controller configuration",
        &api(ingresses
            .create(
                &pp,
                &ingress(
                    "snippet",
                    Some("shop.atk-ing.example"),
                    &json!({"nginx.ingress.kubernetes.io/server-snippet": "location /x { return 200; }"}),
                ),
            )
            .await),
        "snippet",
        &["server-snippet"],
    );
    findings.allowed(
        "an Ingress for the tenant's own name",
        &api(ingresses
            .create(
                &pp,
                &ingress("own", Some("shop.atk-ing.example"), &json!({})),
            )
            .await),
    );
    findings.events_on(&admin, tenant).await?;
    findings.report();
    Ok(())
}

#[tokio::test]
async fn an_object_made_before_the_operators_is_never_adopted() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-adopt";
    let tenants = Api::<Tenant>::all(admin.clone());
    ensure_tenant(
        &admin,
        tenant,
        json!({"access": admins(tenant), "zones": [{"name": "data"}]}),
    )
    .await?;
    wait_ready(&admin, tenant).await?;
    let ns = "atk-adopt-data";
    wait_for_access(&admin, ns).await?;
    // Before backups exist, alice makes a CronJob of the name the operator will use, with a
    // container of hers that would read the credentials once the operator adds them.
    let thief: CronJob = object(json!({
        "metadata": {"name": "enclave-backup"},
        "spec": {"schedule": "0 3 1 1 *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "steal", "image": "busybox", "command": ["sh", "-c", "cat /run/enclave/*"]}]}}}}}
    }));
    tolerate_exists(
        Api::<CronJob>::namespaced(alice(tenant).await?, ns)
            .create(&PostParams::default(), &thief)
            .await,
    )?;
    // The platform then enables backups for a volume in that zone.
    ensure_secret_for_backups(&admin, tenant).await?;
    tenants
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {
                "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
                "backup": backup(tenant)}})),
        )
        .await?;
    let status = eventually("ApplyFailed naming the CronJob", WAIT, || async {
        let status = tenants.get(tenant).await?.status.unwrap_or_default();
        Ok(status.conditions.into_iter().find(|c| {
            c.type_ == "Ready"
                && c.reason == "ApplyFailed"
                && c.message.contains("CronJob atk-adopt-data/enclave-backup")
        }))
    })
    .await?;
    assert!(
        status.message.contains("not Enclave's"),
        "{}",
        status.message
    );
    // Still hers alone: no managed label, no backup identity, no credentials in it.
    let live = Api::<CronJob>::namespaced(admin.clone(), ns)
        .get("enclave-backup")
        .await?;
    let labels = live.metadata.labels.unwrap_or_default();
    assert!(
        !labels.contains_key("app.kubernetes.io/managed-by"),
        "adopted: {labels:?}"
    );
    let pod = live
        .spec
        .and_then(|s| s.job_template.spec)
        .and_then(|j| j.template.spec)
        .context("pod")?;
    assert_ne!(pod.service_account_name.as_deref(), Some("enclave-backup"));
    assert_eq!(
        pod.containers.len(),
        1,
        "the operator's containers were added to hers"
    );
    Ok(())
}

/// The object store's credentials in the operator's namespace, as `backup(tenant)` names them.
async fn ensure_secret_for_backups(admin: &Client, tenant: &str) -> Result<()> {
    let store: Secret = object(json!({
        "metadata": {"name": format!("{tenant}-s3")},
        "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}
    }));
    tolerate_exists(
        Api::<Secret>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
            .create(&PostParams::default(), &store)
            .await,
    )
}

// ---------------------------------------------------------------------------------------------
// 11. The trail is the API server's alone
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_review_posted_by_anyone_but_the_api_server_is_refused_unrecorded() -> Result<()> {
    let admin = env().client().await?;
    let tenant = "atk-trail";
    ensure_tenant(
        &admin,
        tenant,
        json!({"access": admins(tenant), "zones": [{"name": "app"}]}),
    )
    .await?;
    wait_ready(&admin, tenant).await?;
    let hooks =
        Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(
            admin.clone(),
        )
        .get(enclave_tests::chart::WEBHOOK_CONFIGURATION)
        .await?;
    let url = hooks
        .webhooks
        .iter()
        .flatten()
        .find_map(|h| h.client_config.url.clone())
        .context("the guard's URL")?;
    // A review forging a refused attempt by "mallory", as anyone reaching the guard could.
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "forged", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "forged", "namespace": "atk-trail-app", "operation": "CREATE",
            "userInfo": {"username": "mallory"},
            "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "forged",
                "labels": {"app.kubernetes.io/managed-by": "enclave-operator"}}},
            "dryRun": false
        }
    });
    let output = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data",
            &review.to_string(),
            &url,
        ])
        .output()?;
    let code = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        code, "401",
        "a review without the API server's certificate was answered"
    );
    // Nothing of it is on record; a real attempt through the API server still is.
    let forged: k8s_openapi::api::core::v1::ConfigMap = object(json!({"metadata": {"name": "real",
        "labels": {"app.kubernetes.io/managed-by": "enclave-operator"}}}));
    let refused = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        alice(tenant).await?,
        "atk-trail-app",
    )
    .create(&PostParams::default(), &forged)
    .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{refused:?}"
    );
    let notes = eventually("alice's attempt on record", WAIT, || async {
        let notes = refusal_notes(&admin, tenant).await?;
        Ok(notes
            .iter()
            .any(|n| n.starts_with("alice "))
            .then_some(notes))
    })
    .await?;
    assert!(
        !notes.iter().any(|n| n.contains("mallory")),
        "a forged attempt is on record: {notes:?}"
    );
    Ok(())
}
