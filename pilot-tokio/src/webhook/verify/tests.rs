//! Unit tests for signature verification: published vectors, rotation, tampering, time.

use super::*;
use axum::http::HeaderValue;
use proptest::prelude::*;

/// The Standard Webhooks specification's example secret, id, timestamp, body and signature,
/// as used by the reference libraries' tests (checked independently with Python's `hmac`).
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: u64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// GitHub's documented example: secret, body and header value.
const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
const GH_BODY: &[u8] = b"Hello, World!";
const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn sw_secret() -> Secret {
    Secret::from_standard(SW_SECRET).unwrap()
}

fn other_secret() -> Secret {
    Secret::from_standard("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap()
}

fn sw_verify(
    secrets: &[Secret],
    sig: &str,
    body: &[u8],
    now: u64,
) -> Result<Verified, VerifyError> {
    let ts = SW_TS.to_string();
    verify_standard_parts(secrets, SW_ID, &ts, sig, body, now, DEFAULT_TOLERANCE)
}

fn sw_headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_WEBHOOK_ID, HeaderValue::from_str(id).unwrap());
    headers.insert(HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from_str(ts).unwrap());
    headers.insert(
        HEADER_WEBHOOK_SIGNATURE,
        HeaderValue::from_str(sig).unwrap(),
    );
    headers
}

#[test]
fn standard_vector_signs_exactly() {
    assert_eq!(sign_standard(&sw_secret(), SW_ID, SW_TS, SW_BODY), SW_SIG);
}

#[test]
fn standard_vector_verifies() {
    let verified = sw_verify(&[sw_secret()], SW_SIG, SW_BODY, SW_TS).unwrap();
    assert_eq!(verified.delivery_id.as_deref(), Some(SW_ID));
    assert_eq!(verified.timestamp, Some(SW_TS));
}

#[test]
fn standard_secret_prefix_is_optional() {
    let bare = Secret::from_standard(SW_SECRET.trim_start_matches("whsec_")).unwrap();
    assert_eq!(sign_standard(&bare, SW_ID, SW_TS, SW_BODY), SW_SIG);
}

#[test]
fn standard_multi_signature_with_one_valid_is_accepted() {
    let sig = format!("v1,bm9wZQ== v1a,AAAA {SW_SIG} v2,whatever");
    assert!(sw_verify(&[sw_secret()], &sig, SW_BODY, SW_TS).is_ok());
}

#[test]
fn standard_rotation_accepts_any_active_secret() {
    let secrets = [other_secret(), sw_secret()];
    assert!(sw_verify(&secrets, SW_SIG, SW_BODY, SW_TS).is_ok());
}

#[test]
fn standard_tampered_body_is_refused() {
    let err = sw_verify(&[sw_secret()], SW_SIG, br#"{"test": 2432232315}"#, SW_TS).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);
    assert!(!err.is_malformed());
}

#[test]
fn standard_wrong_secret_is_refused() {
    let err = sw_verify(&[other_secret()], SW_SIG, SW_BODY, SW_TS).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);
}

#[test]
fn standard_stale_and_future_timestamps_are_refused() {
    let tolerance = DEFAULT_TOLERANCE.as_secs();
    let stale = sw_verify(&[sw_secret()], SW_SIG, SW_BODY, SW_TS + tolerance + 1).unwrap_err();
    assert_eq!(stale, VerifyError::Stale(tolerance + 1));
    let future = sw_verify(&[sw_secret()], SW_SIG, SW_BODY, SW_TS - tolerance - 1).unwrap_err();
    assert_eq!(future, VerifyError::Future(tolerance + 1));
    assert!(sw_verify(&[sw_secret()], SW_SIG, SW_BODY, SW_TS + tolerance).is_ok());
    assert!(sw_verify(&[sw_secret()], SW_SIG, SW_BODY, SW_TS - tolerance).is_ok());
}

#[test]
fn standard_missing_headers_are_malformed() {
    let full = sw_headers(SW_ID, &SW_TS.to_string(), SW_SIG);
    for name in [
        HEADER_WEBHOOK_ID,
        HEADER_WEBHOOK_TIMESTAMP,
        HEADER_WEBHOOK_SIGNATURE,
    ] {
        let mut headers = full.clone();
        headers.remove(name);
        let err = verify_standard(&[sw_secret()], &headers, SW_BODY, SW_TS, DEFAULT_TOLERANCE);
        assert_eq!(err.unwrap_err(), VerifyError::MissingHeader(name));
    }
    let ok = verify_standard(&[sw_secret()], &full, SW_BODY, SW_TS, DEFAULT_TOLERANCE);
    assert!(ok.is_ok());
}

#[test]
fn standard_duplicate_header_is_malformed() {
    let mut headers = sw_headers(SW_ID, &SW_TS.to_string(), SW_SIG);
    headers.append(HEADER_WEBHOOK_ID, HeaderValue::from_static("msg_other"));
    let err = verify_standard(&[sw_secret()], &headers, SW_BODY, SW_TS, DEFAULT_TOLERANCE);
    assert_eq!(
        err.unwrap_err(),
        VerifyError::DuplicateHeader(HEADER_WEBHOOK_ID)
    );
}

#[test]
fn standard_malformed_values_are_refused_as_malformed() {
    let ts = SW_TS.to_string();
    let cases = [
        ("msg.with.dots", ts.as_str(), SW_SIG),
        (SW_ID, "-1614265330", SW_SIG),
        (SW_ID, "1614265330.5", SW_SIG),
        (SW_ID, "", SW_SIG),
        (SW_ID, ts.as_str(), "v1 no-comma"),
        (SW_ID, ts.as_str(), "   "),
    ];
    for (id, ts, sig) in cases {
        let err = verify_standard_parts(
            &[sw_secret()],
            id,
            ts,
            sig,
            SW_BODY,
            SW_TS,
            DEFAULT_TOLERANCE,
        );
        assert!(err.unwrap_err().is_malformed(), "{id} {ts} {sig}");
    }
}

#[test]
fn standard_too_many_entries_is_malformed() {
    let sig = std::iter::repeat_n(SW_SIG, MAX_SIGNATURE_ENTRIES + 1)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        sw_verify(&[sw_secret()], &sig, SW_BODY, SW_TS)
            .unwrap_err()
            .is_malformed()
    );
}

#[test]
fn standard_secret_rules() {
    assert_eq!(
        Secret::from_standard("whsec_!!!").unwrap_err(),
        SecretError::NotBase64
    );
    assert_eq!(
        Secret::from_standard("whsec_AAAA").unwrap_err(),
        SecretError::BadLength(3)
    );
    assert_eq!(Secret::from_bytes(b"").unwrap_err(), SecretError::Empty);
    assert_eq!(format!("{:?}", sw_secret()), "Secret(<redacted>)");
}

#[test]
fn generated_secrets_are_distinct_and_round_trip_through_their_text() {
    let (secret, text) = Secret::generate().unwrap();
    let (_, other) = Secret::generate().unwrap();
    assert!(text.starts_with("whsec_") && text != other);
    let parsed = Secret::from_standard(&text).unwrap();
    let sig = sign_standard(&secret, "msg_1", SW_TS, b"x");
    assert_eq!(sign_standard(&parsed, "msg_1", SW_TS, b"x"), sig);
}

#[test]
fn github_documented_vector_verifies() {
    let secret = Secret::from_bytes(GH_SECRET).unwrap();
    assert_eq!(sign_github(&secret, GH_BODY), GH_SIG);
    assert!(verify_github_header(std::slice::from_ref(&secret), GH_SIG, GH_BODY).is_ok());
    let err = verify_github_header(&[secret], GH_SIG, b"Hello, World?").unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);
}

#[test]
fn github_requires_delivery_and_well_formed_signature() {
    let secret = Secret::from_bytes(GH_SECRET).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_GITHUB_SIGNATURE, HeaderValue::from_static(GH_SIG));
    let err = verify_github(std::slice::from_ref(&secret), &headers, GH_BODY).unwrap_err();
    assert_eq!(err, VerifyError::MissingHeader(HEADER_GITHUB_DELIVERY));

    headers.insert(
        HEADER_GITHUB_DELIVERY,
        HeaderValue::from_static("72d3162e-cc78"),
    );
    let verified = verify_github(std::slice::from_ref(&secret), &headers, GH_BODY).unwrap();
    assert_eq!(verified.delivery_id.as_deref(), Some("72d3162e-cc78"));

    for bad in ["sha1=00", "sha256=zz", "sha256=abcd"] {
        let err = verify_github_header(std::slice::from_ref(&secret), bad, GH_BODY).unwrap_err();
        assert!(err.is_malformed(), "{bad}");
    }
}

#[test]
fn stripe_round_trip_rotation_and_event_id() {
    let old = Secret::from_bytes(b"whsec_old_secret").unwrap();
    let new = Secret::from_bytes(b"whsec_new_secret").unwrap();
    let body = br#"{"id":"evt_123","type":"charge.succeeded"}"#;
    let header = sign_stripe(&new, 1_700_000_000, body);
    let verified = verify_stripe_header(
        &[old.clone(), new],
        &header,
        body,
        1_700_000_010,
        DEFAULT_TOLERANCE,
    )
    .unwrap();
    assert_eq!(verified.delivery_id.as_deref(), Some("evt_123"));
    let err = verify_stripe_header(&[old], &header, body, 1_700_000_010, DEFAULT_TOLERANCE);
    assert_eq!(err.unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn stripe_known_value_matches_independent_hmac() {
    // HMAC-SHA256(key "whsec_test", "1614265330.{}") computed with Python's hmac module.
    let secret = Secret::from_bytes(b"whsec_test").unwrap();
    let expected =
        "t=1614265330,v1=5790023bd77209313f2e32e36caf5921bdd2fac398095f83dc2d2ecd5f696f50";
    assert_eq!(sign_stripe(&secret, 1_614_265_330, b"{}"), expected);
    let with_v0 = format!("{expected},v0=deadbeef");
    assert!(
        verify_stripe_header(&[secret], &with_v0, b"{}", 1_614_265_330, DEFAULT_TOLERANCE).is_ok()
    );
}

#[test]
fn stripe_malformed_and_stale() {
    let secret = Secret::from_bytes(b"k").unwrap();
    for bad in ["", "v1=00", "t=1,t=2,v1=00", "t=abc,v1=00", "garbage"] {
        let err = verify_stripe_header(
            std::slice::from_ref(&secret),
            bad,
            b"{}",
            1,
            DEFAULT_TOLERANCE,
        );
        assert!(err.unwrap_err().is_malformed(), "{bad:?}");
    }
    let header = sign_stripe(&secret, 1_000, b"{}");
    let err = verify_stripe_header(&[secret], &header, b"{}", 2_000, DEFAULT_TOLERANCE);
    assert_eq!(err.unwrap_err(), VerifyError::Stale(1_000));
}

proptest! {
    #[test]
    fn arbitrary_headers_never_panic(id in ".{0,40}", ts in ".{0,24}", sig in ".{0,120}",
                                     body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let secrets = [sw_secret()];
        let _ = verify_standard_parts(&secrets, &id, &ts, &sig, &body, SW_TS, DEFAULT_TOLERANCE);
        let _ = verify_stripe_header(&secrets, &sig, &body, SW_TS, DEFAULT_TOLERANCE);
        let _ = verify_github_header(&secrets, &sig, &body);
    }

    #[test]
    fn signed_by_us_verifies_and_any_body_change_fails(
        body in proptest::collection::vec(any::<u8>(), 0..256), flip in any::<usize>()) {
        let secret = sw_secret();
        let sig = sign_standard(&secret, "msg_1", SW_TS, &body);
        let ts = SW_TS.to_string();
        let secrets = std::slice::from_ref(&secret);
        let ok =
            verify_standard_parts(secrets, "msg_1", &ts, &sig, &body, SW_TS, DEFAULT_TOLERANCE);
        prop_assert!(ok.is_ok());
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(0);
        } else {
            let i = flip % changed.len();
            changed[i] ^= 1;
        }
        let bad = verify_standard_parts(&[secret], "msg_1", &ts, &sig, &changed, SW_TS,
                                        DEFAULT_TOLERANCE);
        prop_assert_eq!(bad.unwrap_err(), VerifyError::BadSignature);
    }
}
