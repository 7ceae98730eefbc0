use super::jwks::{discovery_document, jwks_for};
use super::jwt::{self, ASSERTION_TTL_SECS, AssertionClaims};
use super::keys::{KeyError, KeySet, thumbprint_p256};
use super::secrets::{Bootstrap, Secret32};
use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const SEED_PUBLIC_HEX: &str = "b14b568e56afc31ce420e094082c5480bdac91c73fb752357c0caa3fcfb597d68c057f6cbe689b423daaa9a4e60587a19c2f1f8cd2bce9f5318acc2e22cca7cf";

fn public_hex(keys: &KeySet) -> String {
    let k = keys.signer();
    let mut v = URL_SAFE_NO_PAD.decode(k.x()).unwrap();
    v.extend(URL_SAFE_NO_PAD.decode(k.y()).unwrap());
    hex::encode(v)
}

#[test]
fn seed_tutorial_signing_key_loads_with_its_public_key() {
    let keys = KeySet::parse(&fixture("seed-quickstart-intact.b64")).unwrap();
    assert_eq!(public_hex(&keys), SEED_PUBLIC_HEX);
    assert!(keys.warnings.is_empty());
}

#[test]
fn seed_quickstart_key_with_damaged_trailer_is_recovered_with_a_warning() {
    let keys = KeySet::parse(&fixture("seed-quickstart.b64")).unwrap();
    assert_eq!(public_hex(&keys), SEED_PUBLIC_HEX);
    assert_eq!(keys.warnings.len(), 1, "{:?}", keys.warnings);
    assert!(keys.warnings[0].to_string().contains("recovered"));
}

#[test]
fn second_tutorial_key_loads() {
    let keys = KeySet::parse(&fixture("seed-jwt-guide.b64")).unwrap();
    assert_eq!(keys.keys().len(), 1);
}

#[test]
fn kid_is_rfc7638_thumbprint_in_hex() {
    // RFC 7638 §3.1 canonical form, computed independently here.
    let keys = KeySet::parse(&fixture("seed-quickstart-intact.b64")).unwrap();
    let k = keys.signer();
    let canonical = format!(
        "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{}\",\"y\":\"{}\"}}",
        k.x(),
        k.y()
    );
    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(canonical.as_bytes()));
    assert_eq!(k.kid(), expected);
    assert_eq!(k.kid().len(), 64);
    assert_eq!(thumbprint_p256(k.x(), k.y()), expected);
}

#[test]
fn sec1_pkcs8_and_parameter_blocks_load_to_the_same_key() {
    let with_params = KeySet::parse(&fixture("p256-with-params.pem")).unwrap();
    let pkcs8 = KeySet::parse(&fixture("p256-pkcs8.pem")).unwrap();
    assert_eq!(with_params.signer().kid(), pkcs8.signer().kid());
    let expected = fixture("p256-pkcs8.pub.hex");
    assert_eq!(format!("04{}", public_hex(&pkcs8)), expected.trim());
}

#[test]
fn base64_of_pem_and_of_der_load() {
    let pem = fixture("p256-second.pem");
    let direct = KeySet::parse(&pem).unwrap();
    let b64 = KeySet::parse(&STANDARD.encode(pem.as_bytes())).unwrap();
    assert_eq!(direct.signer().kid(), b64.signer().kid());
    let der = direct.signer().secret().to_sec1_der().unwrap();
    let from_der = KeySet::parse(&STANDARD.encode(&der[..])).unwrap();
    assert_eq!(direct.signer().kid(), from_der.signer().kid());
}

#[test]
fn several_blocks_first_signs_all_published() {
    let text = format!(
        "{}\n{}",
        fixture("p256-second.pem"),
        fixture("p256-pkcs8.pem")
    );
    let keys = KeySet::parse(&text).unwrap();
    assert_eq!(keys.keys().len(), 2);
    let second = KeySet::parse(&fixture("p256-second.pem")).unwrap();
    assert_eq!(keys.signer().kid(), second.signer().kid());
    let doc: serde_json::Value = serde_json::from_slice(&jwks_for(&keys).body).unwrap();
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![keys.keys()[0].kid(), keys.keys()[1].kid()]);
    // Base64 of the two-block text works too.
    let b64 = KeySet::parse(&STANDARD.encode(text.as_bytes())).unwrap();
    assert_eq!(b64.keys().len(), 2);
}

#[test]
fn non_p256_keys_are_refused_with_a_clear_error() {
    let err = KeySet::parse(&fixture("p384.pem")).unwrap_err().to_string();
    assert!(err.contains("P-384") && err.contains("P-256"), "{err}");
    let err = KeySet::parse(&fixture("rsa-pkcs8.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("RSA") && err.contains("P-256"), "{err}");
}

#[test]
fn garbage_key_input_is_an_error_not_a_panic() {
    for input in [
        "",
        "   ",
        "not base64 !!",
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----\nno end",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        "aGVsbG8=",
    ] {
        assert!(KeySet::parse(input).is_err(), "{input:?} should fail");
    }
    assert_eq!(KeySet::parse(""), Err(KeyError::Empty));
}

#[test]
fn key_debug_output_never_contains_private_material() {
    let keys = KeySet::parse(&fixture("p256-second.pem")).unwrap();
    let dbg = format!("{keys:?}");
    let d = hex::encode(keys.signer().secret().to_bytes());
    assert!(!dbg.contains(&d));
    assert!(dbg.contains(keys.signer().kid()));
}

fn identity() -> Identity {
    Identity {
        sub: "user-123".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        groups: vec!["admins".into(), "users".into()],
        sid: "sess-1".into(),
    }
}

fn decode_part(token: &str, i: usize) -> serde_json::Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn assertion_has_exactly_the_pomerium_claim_set() {
    let keys = KeySet::generate();
    let (token, _) = jwt::mint(
        &keys,
        &identity(),
        "app.example.com",
        IssuerFormat::Host,
        1_700_000_000,
    )
    .unwrap();
    let header = decode_part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], keys.signer().kid());
    let claims = decode_part(&token, 1);
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(|s| s.as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "aud", "email", "exp", "groups", "iat", "iss", "jti", "name", "sid", "sub", "user"
        ]
    );
    assert_eq!(claims["iss"], "app.example.com");
    assert_eq!(claims["aud"], "app.example.com");
    assert_eq!(claims["sub"], "user-123");
    assert_eq!(claims["user"], "user-123");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "users"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        ASSERTION_TTL_SECS
    );
    assert_eq!(claims["iat"], 1_700_000_000);
}

#[test]
fn groups_claim_is_an_empty_array_when_there_are_none() {
    let keys = KeySet::generate();
    let mut id = identity();
    id.groups.clear();
    let (token, _) = jwt::mint(&keys, &id, "h", IssuerFormat::Host, 1).unwrap();
    assert_eq!(decode_part(&token, 1)["groups"], serde_json::json!([]));
}

#[test]
fn uri_issuer_format_uses_https_host_slash() {
    let keys = KeySet::generate();
    let (token, _) =
        jwt::mint(&keys, &identity(), "app.example.com", IssuerFormat::Uri, 1).unwrap();
    let c = decode_part(&token, 1);
    assert_eq!(c["iss"], "https://app.example.com/");
    assert_eq!(c["aud"], "app.example.com");
}

#[test]
fn every_assertion_gets_a_unique_jti() {
    let keys = KeySet::generate();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let (_, c) = jwt::mint(&keys, &identity(), "h", IssuerFormat::Host, 1).unwrap();
        assert!(seen.insert(c.jti));
    }
}

#[test]
fn assertion_verifies_against_the_published_key_and_fails_for_another_audience() {
    let keys = KeySet::generate();
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let (token, _) =
        jwt::mint(&keys, &identity(), "a.example.com", IssuerFormat::Host, now).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["a.example.com"]);
    v.set_issuer(&["a.example.com"]);
    let data =
        jsonwebtoken::decode::<AssertionClaims>(&token, keys.signer().decoding_key(), &v).unwrap();
    assert_eq!(data.claims.email, "alice@example.com");
    v.set_audience(&["b.example.com"]);
    assert!(
        jsonwebtoken::decode::<AssertionClaims>(&token, keys.signer().decoding_key(), &v).is_err()
    );
}

#[test]
fn jwks_has_public_members_only_and_a_stable_etag() {
    let keys = KeySet::parse(&fixture("p256-second.pem")).unwrap();
    let doc = jwks_for(&keys);
    let v: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
    let k = &v["keys"][0];
    let mut names: Vec<&str> = k.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    names.sort();
    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["use"], "sig");
    assert_eq!(jwks_for(&keys).etag, doc.etag);
    assert_ne!(jwks_for(&KeySet::generate()).etag, doc.etag);
}

#[test]
fn discovery_document_names_the_jwks_and_callback() {
    let doc = discovery_document(
        "https://app.example.com",
        "https://authenticate.example.com/",
        true,
    );
    let v: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
    assert_eq!(
        v["jwks_uri"],
        "https://app.example.com/.well-known/pomerium/jwks.json"
    );
    assert_eq!(
        v["authentication_callback_endpoint"],
        "https://authenticate.example.com/oauth2/callback"
    );
    assert_eq!(v["issuer"], "https://app.example.com/");
    assert_eq!(
        v["frontchannel_logout_uri"],
        "https://app.example.com/.pomerium/sign_out"
    );
    let internal = discovery_document("http://10.0.0.7:9090", "", false);
    let v: serde_json::Value = serde_json::from_slice(&internal.body).unwrap();
    assert_eq!(
        v["jwks_uri"],
        "http://10.0.0.7:9090/.well-known/pomerium/jwks.json"
    );
    assert!(v.get("frontchannel_logout_uri").is_none());
    assert!(v.get("authentication_callback_endpoint").is_none());
}

#[test]
fn generated_bootstrap_secrets_round_trip() {
    let b = Bootstrap::generate();
    let keys = KeySet::parse(&b.signing_key_pem).unwrap();
    assert_eq!(keys.keys().len(), 1);
    let c = Secret32::parse("cookie_secret", &b.cookie_secret.to_base64()).unwrap();
    assert_eq!(c, b.cookie_secret);
    assert_ne!(b.cookie_secret, b.shared_secret);
    let cfg = b.to_config_yaml();
    let line = cfg
        .lines()
        .find(|l| l.starts_with("signing_key: "))
        .unwrap();
    KeySet::parse(line.trim_start_matches("signing_key: ")).unwrap();
    let yaml = b
        .to_secret_yaml("jetbridge", "jetbridge-bootstrap")
        .unwrap();
    assert!(b.to_secret_yaml("jetbridge", "x\nkind: Pod").is_err());
    assert!(yaml.contains("namespace: jetbridge") && yaml.contains("name: jetbridge-bootstrap"));
}

#[test]
fn short_secrets_are_rejected_with_their_length() {
    let err = Secret32::parse("cookie_secret", &STANDARD.encode([1u8; 16])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cookie_secret: must decode to exactly 32 bytes, got 16"
    );
}
