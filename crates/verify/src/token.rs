//! Compact JWS parsing and ES256 signature checks. Pure: no I/O, no clock.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use super::VerifyError;

/// Assertions larger than this are rejected before any decoding. Pomerium's
/// largest assertions (thousands of groups) stay far below it.
pub(crate) const MAX_TOKEN_LEN: usize = 256 * 1024;

/// A compact JWS whose header passed the checks: `alg` is ES256, `kid` is
/// present, and nothing critical is asked of us. Not yet signature-checked.
#[derive(Debug)]
pub(crate) struct ParsedToken<'a> {
    pub(crate) kid: String,
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
}

/// Header and payload of a token, decoded without any verification.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedToken {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The payload's claims. Nothing about them is proven.
    pub claims: Map<String, Value>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| VerifyError::Malformed(format!("the {what} is not unpadded base64url")))
}

fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, VerifyError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(VerifyError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// Splits a compact JWS into its three parts.
fn split(token: &str) -> Result<(&str, &str, &str), VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed(format!(
            "the assertion is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(VerifyError::Malformed(
            "expected a compact JWS with three dot-separated parts".into(),
        )),
    }
}

/// Parses a compact JWS and checks its header; the signature is decoded but not checked.
pub(crate) fn parse(token: &str) -> Result<ParsedToken<'_>, VerifyError> {
    let (header_b64, payload_b64, signature_b64) = split(token)?;
    let header = json_object(&b64(header_b64, "header")?, "header")?;

    match header.get("alg") {
        Some(Value::String(alg)) if alg == "ES256" => {}
        Some(Value::String(alg)) => return Err(VerifyError::BadAlgorithm(alg.clone())),
        Some(other) => return Err(VerifyError::BadAlgorithm(other.to_string())),
        None => return Err(VerifyError::BadAlgorithm("(none given)".into())),
    }
    // RFC 7515 §4.1.11: a recipient must reject extensions it does not understand.
    if header.contains_key("crit") {
        return Err(VerifyError::Malformed(
            "the header lists critical extensions (`crit`), none of which are supported".into(),
        ));
    }
    // Keys come from the configured JWKS only: a token naming its own key
    // or key location is refused rather than ignored, so no verifier
    // downstream that honours these can be steered by it.
    for k in ["jku", "jwk", "x5u", "x5c"] {
        if header.contains_key(k) {
            return Err(VerifyError::Malformed(format!(
                "the header carries `{k}`; keys come from the configured JWKS only"
            )));
        }
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(other) => {
            return Err(VerifyError::Malformed(format!(
                "the header `typ` is {other}, expected \"JWT\""
            )));
        }
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => return Err(VerifyError::MissingKid),
        Some(_) => {
            return Err(VerifyError::Malformed(
                "the header `kid` is not a string".into(),
            ));
        }
    };

    let signature = b64(signature_b64, "signature")?;
    Ok(ParsedToken {
        kid,
        signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
        payload_b64,
        signature,
    })
}

impl ParsedToken<'_> {
    /// Checks the ES256 signature against each candidate key (keys sharing a `kid`).
    pub(crate) fn verify_signature(&self, keys: &[VerifyingKey]) -> Result<(), VerifyError> {
        // ES256 signatures are the fixed 64-byte r‖s form (RFC 7518 §3.4), never DER.
        let signature = <[u8; 64]>::try_from(self.signature.as_slice())
            .ok()
            .and_then(|raw| Signature::from_slice(&raw).ok())
            .ok_or(VerifyError::BadSignature)?;
        let message = self.signing_input.as_bytes();
        if keys.iter().any(|k| k.verify(message, &signature).is_ok()) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// Decodes the payload. Call only after [`verify_signature`](Self::verify_signature).
    pub(crate) fn payload(&self) -> Result<Map<String, Value>, VerifyError> {
        json_object(&b64(self.payload_b64, "payload")?, "payload")
    }
}

/// Decodes a token's header and claims **without verifying anything**.
///
/// For display and diagnostics only (the Verify app shows these, marked
/// UNVERIFIED, when verification fails). Never base a decision on the result.
///
/// ```
/// use jetbridge_verify::decode_unverified;
///
/// // {"alg":"none"} . {"sub":"mallory"} . (no signature)
/// let t = decode_unverified("eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.").unwrap();
/// assert_eq!(t.header["alg"], "none");
/// assert_eq!(t.claims["sub"], "mallory");
/// ```
pub fn decode_unverified(token: &str) -> Result<UnverifiedToken, super::VerifyError> {
    let (header_b64, payload_b64, _) = split(token)?;
    Ok(UnverifiedToken {
        header: json_object(&b64(header_b64, "header")?, "header")?,
        claims: json_object(&b64(payload_b64, "payload")?, "payload")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use serde_json::json;

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn sign(key: &SigningKey, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", enc(header), enc(payload));
        let sig: Signature = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn es256() -> Value {
        json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
    }

    #[test]
    fn well_formed_es256_token_parses_and_verifies() {
        let key = signing_key(7);
        let token = sign(&key, &es256(), &json!({"sub": "u"}));
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.kid, "k1");
        parsed.verify_signature(&[*key.verifying_key()]).unwrap();
        assert_eq!(parsed.payload().unwrap()["sub"], "u");
    }

    #[test]
    fn any_key_sharing_the_kid_may_verify() {
        let (a, b) = (signing_key(1), signing_key(2));
        let token = sign(&b, &es256(), &json!({}));
        let parsed = parse(&token).unwrap();
        parsed
            .verify_signature(&[*a.verifying_key(), *b.verifying_key()])
            .unwrap();
        assert_eq!(
            parsed.verify_signature(&[*a.verifying_key()]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn algorithms_other_than_es256_are_rejected() {
        for alg in [
            json!("none"),
            json!("HS256"),
            json!("RS256"),
            json!("ES384"),
            json!("es256"),
            json!(1),
        ] {
            let token = format!(
                "{}.{}.",
                enc(&json!({"alg": alg, "kid": "k1"})),
                enc(&json!({}))
            );
            let err = parse(&token).unwrap_err();
            assert!(
                matches!(err, VerifyError::BadAlgorithm(_)),
                "{alg}: {err:?}"
            );
        }
        let token = format!("{}.{}.", enc(&json!({"kid": "k1"})), enc(&json!({})));
        assert!(matches!(parse(&token), Err(VerifyError::BadAlgorithm(_))));
    }

    #[test]
    fn header_without_kid_is_rejected() {
        for header in [json!({"alg": "ES256"}), json!({"alg": "ES256", "kid": ""})] {
            let token = sign(&signing_key(1), &header, &json!({}));
            assert_eq!(parse(&token).unwrap_err(), VerifyError::MissingKid);
        }
    }

    #[test]
    fn critical_extensions_and_foreign_types_are_rejected() {
        for header in [
            json!({"alg": "ES256", "kid": "k1", "crit": ["b64"], "b64": false}),
            json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
        ] {
            let token = sign(&signing_key(1), &header, &json!({}));
            assert!(
                matches!(parse(&token), Err(VerifyError::Malformed(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn structurally_broken_tokens_are_malformed() {
        let good = sign(&signing_key(1), &es256(), &json!({}));
        let (h, rest) = good.split_once('.').unwrap();
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{good}.extra"),
            format!("{h}=.{rest}"),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.{rest}", enc(&json!(["ES256"]))),
            format!("{good}+"),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for token in cases {
            let err = parse(&token).unwrap_err();
            assert!(
                matches!(err, VerifyError::Malformed(_)),
                "{token:.40}: {err:?}"
            );
        }
    }

    #[test]
    fn altered_payload_or_signature_fails_the_signature_check() {
        let key = signing_key(3);
        let token = sign(&key, &es256(), &json!({"sub": "alice"}));
        let (h, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{h}.{}.{sig}", enc(&json!({"sub": "admin"})));
        let sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let mut flipped = sig_bytes.clone();
        flipped[10] ^= 1;
        let truncated = &sig_bytes[..63];
        let vk = [*key.verifying_key()];
        for token in [
            forged,
            format!(
                "{h}.{}.{}",
                rest.split_once('.').unwrap().0,
                URL_SAFE_NO_PAD.encode(&flipped)
            ),
            format!(
                "{h}.{}.{}",
                rest.split_once('.').unwrap().0,
                URL_SAFE_NO_PAD.encode(truncated)
            ),
            format!("{h}.{}.", rest.split_once('.').unwrap().0),
        ] {
            let parsed = parse(&token).unwrap();
            assert_eq!(parsed.verify_signature(&vk), Err(VerifyError::BadSignature));
        }
    }

    #[test]
    fn unverified_decoding_shows_header_and_claims_of_any_token() {
        let t = decode_unverified(&format!(
            "{}.{}.",
            enc(&json!({"alg": "none"})),
            enc(&json!({"email": "x@example.com"}))
        ))
        .unwrap();
        assert_eq!(t.header["alg"], "none");
        assert_eq!(t.claims["email"], "x@example.com");
        assert!(decode_unverified("garbage").is_err());
    }
}
