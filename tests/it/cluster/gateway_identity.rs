//! Who may pass on Gateway API routes (`tests/fixtures/gateway/identity.yaml`):
//! a Pomerium PolicyFilter or a Policy named by an `ExtensionRef`, and the
//! baseline Policy that targets the Gateway, decided for signed-in users.

use super::gateway_fixtures::{route_on_either, snapshot};
use crate::harness::golden::cluster_objects as objects;
use crate::harness::golden::lets_in;
use jetbridge::model::Access;

fn fixture() -> jetbridge::model::Snapshot {
    let path = format!(
        "{}/tests/fixtures/gateway/identity.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    snapshot(&objects(&std::fs::read_to_string(path).unwrap())).1
}

/// `host`'s route for `GET /` on either listener.
fn route<'s>(
    snap: &'s jetbridge::model::Snapshot,
    host: &str,
) -> Option<&'s jetbridge::model::Route> {
    let headers = http::HeaderMap::new();
    let view = jetbridge::model::conditions::RequestView {
        method: &http::Method::GET,
        headers: &headers,
        query: None,
    };
    route_on_either(snap, host, "/", &view)
}

/// Whether `email` may pass on `host`'s route: `None` when the route
/// denies every request (a problem), else the policy's decision.
fn decide(snap: &jetbridge::model::Snapshot, host: &str, email: &str) -> Option<bool> {
    let route = route(snap, host).unwrap_or_else(|| panic!("no route for {host}"));
    let program = match &route.access {
        Access::Policy(p) => p,
        Access::Invalid(_) => return None,
        Access::Public => panic!("{host} is public"),
    };
    Some(lets_in(program, host, email))
}

#[test]
fn gateway_routes_take_their_access_from_filters_policies_and_the_gateway_baseline() {
    let snap = fixture();
    let table = [
        // The PolicyFilter allows alice and mallory; the baseline denies mallory.
        ("filtered.example.com", "alice@example.com", Some(true)),
        ("filtered.example.com", "mallory@example.com", Some(false)),
        ("filtered.example.com", "bob@example.com", Some(false)),
        // No Policy of its own: the baseline's allow (example.com) and deny,
        // not the Gateway's public default.
        ("defaulted.example.com", "bob@example.com", Some(true)),
        ("defaulted.example.com", "mallory@example.com", Some(false)),
        ("defaulted.example.com", "carol@partner.test", Some(false)),
        // Its own Policy replaces the baseline's allow, never its deny.
        ("partner.example.com", "carol@partner.test", Some(true)),
        ("partner.example.com", "bob@example.com", Some(false)),
        ("partner.example.com", "mallory@example.com", Some(false)),
        // An invalid or missing PolicyFilter: the route denies everyone.
        ("broken.example.com", "alice@example.com", None),
        ("absent.example.com", "alice@example.com", None),
    ];
    for (host, email, want) in table {
        assert_eq!(decide(&snap, host, email), want, "{email} on {host}");
    }
}

#[test]
fn a_policy_named_by_a_rule_sends_the_assertion_and_claim_headers_upstream() {
    let snap = fixture();
    let partner = route(&snap, "partner.example.com").unwrap();
    assert!(partner.pass_identity_headers);
    let claims: Vec<(String, String)> = partner
        .jwt_claims_headers
        .iter()
        .map(|(h, c)| (h.to_string(), c.clone()))
        .collect();
    assert_eq!(claims, [("x-email".to_string(), "email".to_string())]);
    // A PolicyFilter carries rules only; the global default applies.
    let filtered = route(&snap, "filtered.example.com").unwrap();
    assert!(!filtered.pass_identity_headers);
    assert!(filtered.jwt_claims_headers.is_empty());
}
