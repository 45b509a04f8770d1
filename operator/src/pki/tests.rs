use super::*;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("time")
}

const DAY: Duration = Duration::from_secs(86_400);

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| (*n).to_string()).collect()
}

fn leaf(ca: &Pem, list: &[&str], now: Timestamp, validity: Duration) -> Pem {
    let v: Vec<String> = list.iter().map(|n| (*n).to_string()).collect();
    issue(ca, &v, KeyAlgorithm::EcdsaP256, now, validity).expect("issue")
}

#[test]
fn ca_issues_certificates_for_the_names_asked() {
    let now = Timestamp::now();
    let ca = new_ca("acme", now, 365 * DAY).expect("ca");
    let ca_info = parse(&ca.cert).expect("ca parses");
    assert!(ca_info.subject.contains("acme"), "{}", ca_info.subject);
    let serving = leaf(
        &ca,
        &["shop.acme.example", "web.acme-dmz.svc"],
        now,
        90 * DAY,
    );
    let info = parse(&serving.cert).expect("leaf parses");
    assert_eq!(
        info.dns_names,
        names(&["shop.acme.example", "web.acme-dmz.svc"])
    );
    assert_eq!(info.issuer, ca_info.subject);
    assert!(signed_by(&serving.cert, &ca.cert));
    assert!(key_matches(&serving.cert, &serving.key));
    assert_eq!(
        info.not_after.as_second() - info.not_before.as_second(),
        90 * 86_400
    );
    assert_ne!(info.serial, ca_info.serial);
    // Never past the CA's own expiry.
    let long = leaf(&ca, &["a.example"], now, 1000 * DAY);
    assert_eq!(
        parse(&long.cert).expect("parses").not_after,
        ca_info.not_after
    );
}

#[test]
fn another_tenants_ca_does_not_vouch() {
    let now = Timestamp::now();
    let acme = new_ca("acme", now, 365 * DAY).expect("ca");
    let globex = new_ca("globex", now, 365 * DAY).expect("ca");
    let serving = leaf(&acme, &["a.example"], now, DAY);
    assert!(!signed_by(&serving.cert, &globex.cert));
    let want = names(&["a.example"]);
    assert_eq!(
        check_leaf(Some(&serving), &globex.cert, &want, now, None),
        Err(Reissue::ForeignIssuer)
    );
}

#[test]
fn leaf_checks_give_the_reason_to_reissue() {
    let now = at(1_800_000_000);
    let ca = new_ca("acme", now, 365 * DAY).expect("ca");
    let want = names(&["a.example"]);
    let serving = leaf(&ca, &["a.example"], now, 30 * DAY);
    assert!(check_leaf(Some(&serving), &ca.cert, &want, now, None).is_ok());
    assert_eq!(
        check_leaf(None, &ca.cert, &want, now, None),
        Err(Reissue::Missing)
    );
    let other = leaf(&ca, &["a.example"], now, 30 * DAY);
    let swapped = Pem {
        cert: serving.cert.clone(),
        key: other.key.clone(),
    };
    assert_eq!(
        check_leaf(Some(&swapped), &ca.cert, &want, now, None),
        Err(Reissue::Unreadable)
    );
    let garbage = Pem {
        cert: "not a certificate".into(),
        key: serving.key.clone(),
    };
    assert_eq!(
        check_leaf(Some(&garbage), &ca.cert, &want, now, None),
        Err(Reissue::Unreadable)
    );
    assert_eq!(
        check_leaf(
            Some(&serving),
            &ca.cert,
            &names(&["a.example", "b.example"]),
            now,
            None
        ),
        Err(Reissue::NamesChanged)
    );
    // Two thirds of 30 days is 20 days.
    let day19 = now.checked_add(19 * DAY).expect("time");
    let day20 = now.checked_add(20 * DAY).expect("time");
    assert!(check_leaf(Some(&serving), &ca.cert, &want, day19, None).is_ok());
    assert_eq!(
        check_leaf(Some(&serving), &ca.cert, &want, day20, None),
        Err(Reissue::Renewal)
    );
    // renewBefore 5 days: renewed at day 25.
    assert!(check_leaf(Some(&serving), &ca.cert, &want, day20, Some(5 * DAY)).is_ok());
}

#[test]
fn renewal_at_two_thirds_or_renew_before() {
    let (start, end) = (at(0), at(90 * 86_400));
    assert_eq!(renewal_time(start, end, None), at(60 * 86_400));
    assert_eq!(renewal_time(start, end, Some(30 * DAY)), at(60 * 86_400));
    assert_eq!(renewal_time(start, end, Some(7 * DAY)), at(83 * 86_400));
    // Never before the start, whatever renewBefore says.
    assert_eq!(renewal_time(start, end, Some(365 * DAY)), start);
}

#[test]
fn ca_rotates_at_two_thirds_and_is_recreated_when_gone_or_expired() {
    let now = at(1_800_000_000);
    assert_eq!(plan_ca(None, now), CaPlan::Create);
    let ca = new_ca("acme", now, 300 * DAY).expect("ca");
    assert!(matches!(plan_ca(Some(&ca), now), CaPlan::Keep(_)));
    let day199 = now.checked_add(199 * DAY).expect("time");
    let day200 = now.checked_add(200 * DAY).expect("time");
    let day300 = now.checked_add(300 * DAY).expect("time");
    assert!(matches!(plan_ca(Some(&ca), day199), CaPlan::Keep(_)));
    assert!(matches!(plan_ca(Some(&ca), day200), CaPlan::Rotate(_)));
    assert_eq!(plan_ca(Some(&ca), day300), CaPlan::Create);
}

#[test]
fn rsa_keys_are_an_option() {
    let now = Timestamp::now();
    let ca = new_ca("acme", now, 365 * DAY).expect("ca");
    let serving = issue(&ca, &["a.example".into()], KeyAlgorithm::Rsa2048, now, DAY).expect("rsa");
    assert!(serving.key.contains("PRIVATE KEY"));
    assert!(key_matches(&serving.cert, &serving.key));
    assert!(signed_by(&serving.cert, &ca.cert));
}

#[test]
fn keys_never_show_in_debug_output() {
    let ca = new_ca("acme", Timestamp::now(), DAY).expect("ca");
    let printed = format!("{ca:?}");
    assert!(!printed.contains("PRIVATE KEY") && printed.contains("<redacted>"));
}

#[test]
fn policy_names_only_aead_suites_with_ecdhe() {
    let tls12 = Policy {
        min_version: TlsVersion::Tls12,
    };
    assert!(
        tls12
            .suites()
            .iter()
            .all(|s| s.contains("GCM") || s.contains("CHACHA20"))
    );
    assert!(
        tls12
            .suites()
            .iter()
            .filter(|s| !s.starts_with("TLS_AES") && !s.starts_with("TLS_CHACHA"))
            .all(|s| s.starts_with("TLS_ECDHE_"))
    );
    let tls13 = Policy {
        min_version: TlsVersion::Tls13,
    };
    assert_eq!(tls13.suites(), TLS13_SUITES);
    assert_eq!(tls13.protocols(), "TLSv1.3");
    let ca = new_ca("acme", Timestamp::now(), DAY).expect("ca");
    let serving = leaf(&ca, &["a.example"], Timestamp::now(), DAY);
    let config = tls12.server_config(&serving).expect("server config");
    assert_eq!(config.crypto_provider().cipher_suites.len(), 9);
}
