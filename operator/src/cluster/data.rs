//! What destroys or creates data, for the applier's retention and the purge: key Secrets
//! (created once, never rewritten), volumes switched to `Delete`, claims and keys deleted.

use super::{Note, Writer, display_name};
use crate::desired::storage::KeySecret;
use crate::error::{Phase, Result, api};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use kube::api::{Api, ApiResource, ListParams};
use kube::{Client, ResourceExt};

/// Creates a Secret with fresh random keys in `key.key_fields`, unless it exists. True when it
/// was created now.
///
/// # Errors
/// When the API server refuses, or the system has no randomness.
pub async fn create_key(writer: &Writer<'_>, client: &Client, key: &KeySecret) -> Result<bool> {
    let namespace = key.secret.namespace().unwrap_or_default();
    let name = key.secret.name_any();
    if Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_metadata_opt(&name)
        .await
        .map_err(api(
            Phase::Apply,
            "get",
            "Secret",
            display_name(Some(&namespace), &name),
        ))?
        .is_some()
    {
        return Ok(false);
    }
    let mut secret = key.secret.clone();
    let data = secret.string_data.get_or_insert_with(Default::default);
    for field in &key.key_fields {
        data.insert(field.clone(), random_key()?);
    }
    // The Event names the Secret, never its content.
    writer
        .create_absent(
            &secret,
            Note::normal(
                "Created",
                "Apply",
                format!("created Secret {namespace}/{name}"),
            ),
        )
        .await
}

/// 256 random bits from the operating system, as 64 hex digits.
fn random_key() -> Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| crate::Error::Key(e.to_string()))?;
    Ok(crate::units::hex(&bytes))
}

/// Destroys a claim's data: its volume is switched to `Delete` (classes retain by default) so
/// that the provisioner erases it, then the claim is deleted.
///
/// # Errors
/// The first request the API server refuses.
pub async fn purge_claim(
    writer: &Writer<'_>,
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(api(
            Phase::Sweep,
            "get",
            "PersistentVolumeClaim",
            display_name(Some(namespace), name),
        ))?;
    let managed = claim.as_ref().is_some_and(|c| {
        c.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::labels::MANAGED_BY))
            .map(String::as_str)
            == Some(crate::labels::MANAGER)
    });
    if let (true, Some(volume), Some(uid)) = (
        managed,
        claim
            .as_ref()
            .and_then(|c| c.spec.as_ref()?.volume_name.clone()),
        claim.as_ref().and_then(|c| c.metadata.uid.clone()),
    ) {
        release_volume(writer, client, &volume, &uid).await?;
    }
    writer
        .remove(
            &ApiResource::erase::<PersistentVolumeClaim>(&()),
            Some(namespace),
            name,
            claim.as_ref().and_then(|c| c.metadata.uid.as_deref()),
            Note::normal("Purged", "Delete", format!("deleted volume claim {namespace}/{name} and its volume: its retention window has passed")),
        )
        .await
}

/// Switches the volumes bound to the tenant's claims (in `namespace`, or everywhere) to
/// `Delete`, so that deleting the claims destroys the data rather than leave it on disk. Only
/// claims the operator made (the managed-by label, which nobody else may set), and only the
/// volume bound to that very claim (its `claimRef.uid`): a claim naming another tenant's volume
/// releases nothing.
///
/// # Errors
/// The first request the API server refuses.
pub async fn release_volumes(
    writer: &Writer<'_>,
    client: &Client,
    selector: &str,
    namespace: Option<&str>,
) -> Result<()> {
    let claims = match namespace {
        Some(namespace) => Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace),
        None => Api::<PersistentVolumeClaim>::all(client.clone()),
    };
    let selector = format!("{selector},{}", crate::labels::managed_selector());
    let claims = claims
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api(
            writer.phase,
            "list",
            "PersistentVolumeClaim",
            &selector,
        ))?;
    for claim in claims {
        if let (Some(volume), Some(uid)) = (
            claim.spec.as_ref().and_then(|s| s.volume_name.clone()),
            claim.metadata.uid.as_deref(),
        ) {
            release_volume(writer, client, &volume, uid).await?;
        }
    }
    Ok(())
}

/// Switches one volume to `Delete`, unless it is gone, already so, or bound to another claim
/// than `claim_uid`.
async fn release_volume(
    writer: &Writer<'_>,
    client: &Client,
    volume: &str,
    claim_uid: &str,
) -> Result<()> {
    let live = Api::<PersistentVolume>::all(client.clone())
        .get_opt(volume)
        .await
        .map_err(api(writer.phase, "get", "PersistentVolume", volume))?;
    let Some(spec) = live.as_ref().and_then(|v| v.spec.as_ref()) else {
        return Ok(());
    };
    let bound_here = spec.claim_ref.as_ref().and_then(|c| c.uid.as_deref()) == Some(claim_uid);
    if !bound_here || spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete") {
        return Ok(());
    }
    writer.release_volume(volume).await
}

/// Deletes the key Secrets matching `selector` in the operator's namespace; returns how many
/// there were.
///
/// # Errors
/// The first request the API server refuses.
pub async fn delete_keys(
    writer: &Writer<'_>,
    client: &Client,
    operator_namespace: &str,
    selector: &str,
) -> Result<usize> {
    let keys = Api::<Secret>::namespaced(client.clone(), operator_namespace)
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(api(writer.phase, "list", "Secret", selector))?;
    for key in keys
        .items
        .iter()
        .filter(|k| k.metadata.deletion_timestamp.is_none())
    {
        let name = key.name_any();
        writer
            .remove(
                &ApiResource::erase::<Secret>(&()),
                Some(operator_namespace),
                &name,
                key.metadata.uid.as_deref(),
                Note::normal(
                    "Purged",
                    "Delete",
                    format!(
                        "deleted key {operator_namespace}/{name}: the data it protected is purged"
                    ),
                ),
            )
            .await?;
    }
    Ok(keys.items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_are_256_bits_and_differ() {
        let (a, b) = (random_key().expect("key"), random_key().expect("key"));
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
