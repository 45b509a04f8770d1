//! What the applier applies for the objects whose live state limits the desired one. Pure:
//! a claim never shrinks and grows only once bound; a StatefulSet keeps its live claim
//! templates, which cannot change.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The claim to apply: `desired`, except that an unbound claim keeps its size until bound
/// (Kubernetes refuses to resize an unbound claim, and the binding, watched, brings the growth)
/// and that a claim never shrinks (Kubernetes refuses it, and one refused claim would stop
/// every later apply): a claim grown beyond the spec keeps its size.
#[must_use]
pub fn claim_to_apply(
    desired: &PersistentVolumeClaim,
    live: Option<&PersistentVolumeClaim>,
) -> PersistentVolumeClaim {
    let mut claim = desired.clone();
    let (Some(live), Some(spec)) = (live, claim.spec.as_mut()) else {
        return claim;
    };
    let live_resources = live.spec.as_ref().and_then(|s| s.resources.clone());
    let size = |r: Option<&k8s_openapi::api::core::v1::VolumeResourceRequirements>| {
        r.and_then(|r| r.requests.as_ref()?.get("storage"))
            .and_then(|q| crate::units::quantity(&q.0))
    };
    let bound = live.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if !bound || size(live_resources.as_ref()) > size(spec.resources.as_ref()) {
        spec.resources = live_resources;
    }
    claim
}

/// The StatefulSet to apply: `desired` with the live claim templates, which cannot change.
#[must_use]
pub fn keep_claim_templates(desired: &StatefulSet, live: Option<&StatefulSet>) -> StatefulSet {
    let mut set = desired.clone();
    if let (Some(spec), Some(live_spec)) = (set.spec.as_mut(), live.and_then(|l| l.spec.as_ref())) {
        spec.volume_claim_templates = live_spec.volume_claim_templates.clone().map(|templates| {
            templates
                .into_iter()
                .map(|t| PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: t.metadata.name,
                        labels: t.metadata.labels,
                        ..ObjectMeta::default()
                    },
                    spec: t.spec,
                    ..PersistentVolumeClaim::default()
                })
                .collect()
        });
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;

    fn set(template: &str) -> StatefulSet {
        StatefulSet {
            spec: Some(StatefulSetSpec {
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(template.into()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec::default()),
                    ..PersistentVolumeClaim::default()
                }]),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn claim(size: &str, phase: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "acme-data"},
            "spec": {"resources": {"requests": {"storage": size}}},
            "status": {"phase": phase},
        }))
        .expect("claim")
    }

    fn size_of(claim: &PersistentVolumeClaim) -> String {
        claim
            .spec
            .as_ref()
            .and_then(|s| {
                s.resources
                    .as_ref()?
                    .requests
                    .as_ref()?
                    .get("storage")
                    .map(|q| q.0.clone())
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_claim_grows_once_bound_and_never_shrinks() {
        let want = claim("2Gi", None);
        assert_eq!(
            size_of(&claim_to_apply(&want, None)),
            "2Gi",
            "a new claim has the spec's size"
        );
        assert_eq!(
            size_of(&claim_to_apply(&want, Some(&claim("1Gi", Some("Pending"))))),
            "1Gi",
            "unbound: kept"
        );
        assert_eq!(
            size_of(&claim_to_apply(&want, Some(&claim("1Gi", Some("Bound"))))),
            "2Gi",
            "bound: grown"
        );
        assert_eq!(
            size_of(&claim_to_apply(&want, Some(&claim("3Gi", Some("Bound"))))),
            "3Gi",
            "never shrunk"
        );
        assert_eq!(
            size_of(&claim_to_apply(
                &want,
                Some(&claim("2048Mi", Some("Bound")))
            )),
            "2Gi",
            "same size, by value"
        );
    }

    #[test]
    fn a_stateful_set_keeps_its_live_claim_templates() {
        let kept = keep_claim_templates(&set("new"), Some(&set("old")));
        let templates = kept
            .spec
            .and_then(|s| s.volume_claim_templates)
            .unwrap_or_default();
        assert_eq!(templates[0].metadata.name.as_deref(), Some("old"));
        let first = keep_claim_templates(&set("new"), None);
        let templates = first
            .spec
            .and_then(|s| s.volume_claim_templates)
            .unwrap_or_default();
        assert_eq!(templates[0].metadata.name.as_deref(), Some("new"));
    }
}
