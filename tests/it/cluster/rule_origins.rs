//! A route's decisions name the rule that made them where its author wrote
//! it: the `Policy` object (`namespace/name`) and its own rule number, or
//! the Ingress's inline `policy` annotation, across `policy_ref` merges.

use crate::harness::golden::cluster_objects as objects;
use jetbridge::model::Access;
use jetbridge::model::rule_origin::locate;
use jetbridge::policy::{Facts, RequestFacts, User};
use jetbridge::translate::cluster::{ClusterSettings, from_cluster};
use jetbridge::translate::{GlobalInputs, Inputs, translate};

fn user(email: &str, groups: &[&str]) -> User {
    User {
        id: email.into(),
        email: email.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn decisions_name_the_policy_object_or_annotation_and_rule_that_decided() {
    let dir = format!("{}/tests/fixtures/ingress", env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(format!("{dir}/policies.yaml")).unwrap();
    let ci = from_cluster(&objects(&yaml), &ClusterSettings::default());
    let snap = translate(&Inputs {
        global: GlobalInputs::for_test(),
        routes: ci.routes.clone(),
        diagnostics: ci.diagnostics.clone(),
    });
    let route = snap.routes.iter().find(|r| r.id == "p/refs/1").unwrap();
    let Access::Policy(program) = &route.access else {
        panic!("p/refs/1 has a policy: {:?}", route.access)
    };
    let req = RequestFacts {
        method: "GET",
        host: "refs.example.com",
        path: "/",
        ..Default::default()
    };
    // (who, allowed, Policy, rule as numbered where written, setting)
    let cases = [
        (user("ceo@example.com", &[]), true, None, 1, "policy"),
        (
            user("alice@example.com", &["engineering"]),
            true,
            Some("p/engineers"),
            1,
            "Policy",
        ),
        (
            user("bob@contractor.example.com", &["engineering"]),
            false,
            Some("p/no-contractors"),
            1,
            "Policy",
        ),
    ];
    for (u, allowed, policy, rule, setting) in cases {
        let d = program.eval(&Facts {
            user: Some(&u),
            request: &req,
            now: time::OffsetDateTime::UNIX_EPOCH,
        });
        assert_eq!(d.allow, allowed, "{}: {d:?}", u.email);
        let (origin, n) = locate(&route.rule_origins, d.rule.unwrap()).unwrap();
        assert_eq!(
            (origin.policy.as_deref(), n, origin.setting),
            (policy, rule, setting),
            "{}: {d:?} {:?}",
            u.email,
            route.rule_origins
        );
    }
    // No rule matched: nothing to name.
    let d = program.eval(&Facts {
        user: Some(&user("eve@elsewhere.net", &[])),
        request: &req,
        now: time::OffsetDateTime::UNIX_EPOCH,
    });
    assert!(!d.allow && d.rule.is_none(), "{d:?}");
    // An invalid route has no program, so no origins either.
    let broken = snap
        .routes
        .iter()
        .find(|r| r.id == "p/uses-broken/1")
        .unwrap();
    assert!(broken.rule_origins.is_empty());
}

#[test]
fn gateway_api_decisions_name_the_policy_an_extension_ref_names() {
    let dir = format!("{}/tests/fixtures/gateway", env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(format!("{dir}/basic.yaml")).unwrap();
    let ci = from_cluster(&objects(&yaml), &ClusterSettings::default());
    let snap = translate(&Inputs {
        global: GlobalInputs::for_test(),
        routes: ci.routes.clone(),
        diagnostics: ci.diagnostics.clone(),
    });
    let admin: Vec<_> = snap
        .routes
        .iter()
        .filter(|r| r.id.starts_with("shop/store/") && matches!(r.access, Access::Policy(_)))
        .collect();
    assert!(!admin.is_empty(), "the /admin rule names Policy shop/staff");
    for route in admin {
        let Access::Policy(program) = &route.access else {
            unreachable!()
        };
        let d = program.eval(&Facts {
            user: Some(&user("ann@example.com", &[])),
            request: &RequestFacts {
                method: "GET",
                path: "/admin",
                ..Default::default()
            },
            now: time::OffsetDateTime::UNIX_EPOCH,
        });
        assert!(d.allow, "{}: {d:?}", route.id);
        let (origin, n) = locate(&route.rule_origins, d.rule.unwrap()).unwrap();
        assert_eq!(
            (origin.policy.as_deref(), n, origin.setting),
            (Some("shop/staff"), 1, "Policy"),
            "{}",
            route.id
        );
    }
}
