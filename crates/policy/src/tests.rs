use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

use super::cli::{check_command, eval_command};
use super::*;

/// Monday 2024-01-01 10:30 UTC.
const MONDAY_MORNING: OffsetDateTime = datetime!(2024-01-01 10:30 UTC);

fn alice() -> User {
    let mut claims = serde_json::Map::new();
    claims.insert("family_name".into(), json!("Smith"));
    claims.insert("roles".into(), json!(["admin", "dev"]));
    claims.insert("single".into(), json!(["only"]));
    claims.insert("email_verified".into(), json!(true));
    claims.insert("level".into(), json!(3));
    claims.insert(
        "address".into(),
        json!({"country": "NL", "city": {"name": "Delft"}}),
    );
    claims.insert("a.b".into(), json!("dotted-key"));
    User {
        id: "u-alice".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        groups: vec!["admins".into(), "devs".into()],
        claims,
    }
}

fn get(path: &str) -> RequestFacts<'_> {
    RequestFacts {
        method: "GET",
        host: "app.example.com",
        path,
        source_ip: Some("10.1.2.3".parse().unwrap()),
        headers: &[],
    }
}

fn decide(policy: &str, user: Option<&User>, req: &RequestFacts, now: OffsetDateTime) -> Decision {
    let p = compile(policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
    p.eval(&Facts {
        user,
        request: req,
        now,
    })
}

fn allowed(policy: &str, user: Option<&User>, req: &RequestFacts) -> bool {
    decide(policy, user, req, MONDAY_MORNING).allow
}

/// `allow: {and: [<criterion>]}` for a criterion written in flow YAML.
fn single(criterion: &str) -> String {
    format!("allow:\n  and:\n    - {criterion}\n")
}

fn compile_err(policy: &str) -> String {
    match compile(policy) {
        Ok(_) => panic!("expected an error for {policy}"),
        Err(e) => e.to_string(),
    }
}

// ---- criteria -------------------------------------------------------------

#[test]
fn every_criterion_matches_and_fails_as_documented() {
    let a = alice();
    let cors = RequestFacts {
        method: "OPTIONS",
        headers: &[
            ("origin", "https://x"),
            ("access-control-request-method", "POST"),
        ],
        ..get("/")
    };
    let options_without_origin = RequestFacts {
        headers: &[("access-control-request-method", "POST")],
        ..cors
    };
    let v6 = {
        let mut r = get("/");
        r.source_ip = Some("2001:db8::1".parse().unwrap());
        r
    };
    let mapped = {
        let mut r = get("/");
        r.source_ip = Some("::ffff:10.1.2.3".parse().unwrap());
        r
    };
    let no_ip = {
        let mut r = get("/");
        r.source_ip = None;
        r
    };
    let root = get("/");
    let (api, web, internal) = (get("/api/v1"), get("/web"), get("/.pomerium/user"));
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<&User>, &RequestFacts, bool)> = vec![
        ("{accept: true}", None, &root, true),
        ("{reject: true}", Some(&a), &root, false),
        ("{authenticated_user: true}", Some(&a), &root, true),
        ("{authenticated_user: true}", None, &root, false),
        ("{email: alice@example.com}", Some(&a), &root, true),
        ("{email: bob@example.com}", Some(&a), &root, false),
        ("{email: ALICE@example.com}", Some(&a), &root, false),
        ("{email: alice@example.com}", None, &root, false),
        ("{domain: example.com}", Some(&a), &root, true),
        ("{domain: example.org}", Some(&a), &root, false),
        ("{domain: {ends_with: example.com}}", Some(&a), &root, true),
        ("{user: u-alice}", Some(&a), &root, true),
        ("{user: alice@example.com}", Some(&a), &root, false),
        ("{groups: admins}", Some(&a), &root, true),
        ("{groups: ops}", Some(&a), &root, false),
        ("{groups: admins}", None, &root, false),
        ("{claim/family_name: Smith}", Some(&a), &root, true),
        ("{claim/family_name: Jones}", Some(&a), &root, false),
        ("{claim/roles: admin}", Some(&a), &root, true),
        ("{claim/roles: ops}", Some(&a), &root, false),
        ("{claim/email_verified: true}", Some(&a), &root, true),
        ("{claim/email_verified: false}", Some(&a), &root, false),
        ("{claim/email_verified: 'true'}", Some(&a), &root, false),
        ("{claim/level: 3}", Some(&a), &root, true),
        ("{claim/address/country: NL}", Some(&a), &root, true),
        ("{claim/address.country: NL}", Some(&a), &root, true),
        ("{claim/address/city/name: Delft}", Some(&a), &root, true),
        ("{claim/address/country: BE}", Some(&a), &root, false),
        ("{claim/a.b: dotted-key}", Some(&a), &root, true),
        ("{claim/missing: x}", Some(&a), &root, false),
        ("{claim/email: alice@example.com}", Some(&a), &root, true),
        ("{claim/sub: u-alice}", Some(&a), &root, true),
        ("{claim/groups: devs}", Some(&a), &root, true),
        ("{claims/family_name: Smith}", Some(&a), &root, true),
        ("{http_method: GET}", None, &root, true),
        ("{http_method: POST}", None, &root, false),
        ("{http_method: get}", None, &root, false),
        ("{http_path: {starts_with: /api}}", None, &api, true),
        ("{http_path: {starts_with: /api}}", None, &web, false),
        ("{http_path: /}", None, &root, true),
        ("{source_ip: 10.0.0.0/8}", None, &root, true),
        ("{source_ip: 10.1.2.3}", None, &root, true),
        ("{source_ip: 192.168.0.0/16}", None, &root, false),
        ("{source_ip: [192.168.0.0/16, 10.1.0.0/16]}", None, &root, true),
        ("{source_ip: 10.0.0.0/8}", None, &mapped, true),
        ("{source_ip: 10.0.0.0/8}", None, &no_ip, false),
        ("{source_ip: '2001:db8::/32'}", None, &v6, true),
        ("{source_ip: 10.0.0.0/8}", None, &v6, false),
        ("{cors_preflight: true}", None, &cors, true),
        ("{cors_preflight: true}", None, &options_without_origin, false),
        ("{cors_preflight: true}", None, &root, false),
        ("{pomerium_routes: true}", None, &internal, true),
        ("{pomerium_routes: true}", None, &root, false),
        ("{day_of_week: mon}", None, &root, true),
        ("{day_of_week: tue-fri}", None, &root, false),
        ("{day_of_week: '*'}", None, &root, true),
        ("{day_of_week: 'sat,sun'}", None, &root, false),
        ("{day_of_week: fri-mon}", None, &root, true),
        ("{day_of_week: Monday}", None, &root, true),
        ("{time_of_day: {timezone: UTC, after: '9:00', before: '17:00'}}", None, &root, true),
        ("{time_of_day: {timezone: UTC, after: '9:00am', before: '10:31'}}", None, &root, true),
        ("{time_of_day: {timezone: UTC, after: '10:31'}}", None, &root, false),
        ("{time_of_day: {timezone: UTC, before: '10:30:00'}}", None, &root, false),
        ("{time_of_day: {timezone: UTC, after: '10PM', before: '6AM'}}", None, &root, false),
        ("{time_of_day: {timezone: '+13:00', after: '10PM', before: '6AM'}}", None, &root, true),
        ("{time_of_day: {timezone: UTC-11, after: '11:00 PM'}}", None, &root, true),
        ("{date: {after: '2023-12-31T00:00:00Z', before: '2024-01-02'}}", None, &root, true),
        ("{date: {after: '2024-01-01T10:31:00'}}", None, &root, false),
        ("{date: {before: '2024-01-01T11:30:00+01:00'}}", None, &root, false),
    ];
    for (criterion, user, req, want) in cases {
        let policy = single(criterion);
        assert_eq!(
            allowed(&policy, user, req),
            want,
            "{criterion} with user={:?} path={} method={}",
            user.map(|u| &u.email),
            req.path,
            req.method
        );
    }
}

#[test]
fn day_of_week_uses_the_given_offset() {
    // Monday 10:30 UTC is still Sunday in UTC-11.
    let p = single("{day_of_week: {days: sun, timezone: '-11:00'}}");
    assert!(allowed(&p, None, &get("/")));
    let p = single("{day_of_week: {days: mon}}");
    assert!(allowed(&p, None, &get("/")));
}

#[test]
fn odd_time_zone_text_is_an_error_not_a_panic() {
    for tz in [
        "+a€",
        "+0€",
        "UTC+",
        "+24:00",
        "+1:60",
        "-",
        "Mars/Olympus",
        "+12345",
    ] {
        let p = single(&format!(
            "{{time_of_day: {{timezone: '{tz}', after: '9:00'}}}}"
        ));
        let e = compile_err(&p);
        assert!(e.contains("time zone"), "{tz}: {e}");
    }
    let p = single("{time_of_day: {timezone: '-0730', after: '9:00'}}");
    assert!(compile(&p).is_ok());
}

#[test]
fn time_of_day_window_is_inclusive_after_and_exclusive_before() {
    let p = single("{time_of_day: {timezone: UTC, after: '10:30', before: '11:00'}}");
    let at = |t| decide(&p, None, &get("/"), t).allow;
    assert!(at(datetime!(2024-01-01 10:30 UTC)));
    assert!(at(datetime!(2024-01-01 10:59:59.999 UTC)));
    assert!(!at(datetime!(2024-01-01 11:00 UTC)));
    assert!(!at(datetime!(2024-01-01 10:29:59 UTC)));
}

// ---- matchers -------------------------------------------------------------

#[test]
fn every_string_matcher_operator_matches_and_fails() {
    let a = alice();
    let r = get("/");
    #[rustfmt::skip]
    let cases = [
        ("{is: alice@example.com}", true),
        ("{is: bob@example.com}", false),
        ("{not: bob@example.com}", true),
        ("{not: alice@example.com}", false),
        ("{starts_with: alice@}", true),
        ("{starts_with: bob@}", false),
        ("{ends_with: '@example.com'}", true),
        ("{ends_with: '@example.org'}", false),
        ("{contains: 'ce@ex'}", true),
        ("{contains: 'bob'}", false),
        ("{in: [bob@example.com, alice@example.com]}", true),
        ("{in: [bob@example.com]}", false),
        ("{not_in: [bob@example.com]}", true),
        ("{not_in: [alice@example.com]}", false),
        ("alice@example.com", true),
        ("bob@example.com", false),
        ("{starts_with: alice, ends_with: .com}", true),
        ("{starts_with: alice, ends_with: .org}", false),
    ];
    for (matcher, want) in cases {
        let p = single(&format!("{{email: {matcher}}}"));
        assert_eq!(allowed(&p, Some(&a), &r), want, "email: {matcher}");
    }
}

#[test]
fn every_list_matcher_operator_matches_and_fails() {
    let a = alice();
    let r = get("/");
    #[rustfmt::skip]
    let cases = [
        ("groups: {has: admins}", true),
        ("groups: {has: ops}", false),
        ("groups: admins", true),
        ("groups: ops", false),
        ("groups: {is: admins}", false), // two groups, `is` needs exactly one
        ("claim/single: {is: only}", true),
        ("claim/single: {is: other}", false),
        ("claim/family_name: {is: Smith}", true),
        ("groups: {exclude: ops}", true),
        ("groups: {exclude: admins}", false),
        ("claim/missing: {exclude: x}", true),
        ("groups: {has: admins, exclude: ops}", true),
        ("groups: {has: admins, exclude: devs}", false),
    ];
    for (criterion, want) in cases {
        let p = single(&format!("{{{criterion}}}"));
        assert_eq!(allowed(&p, Some(&a), &r), want, "{criterion}");
    }
}

#[test]
fn numbers_in_string_matchers_compare_as_written() {
    let mut u = alice();
    u.id = "12345".into();
    assert!(allowed(&single("{user: 12345}"), Some(&u), &get("/")));
    assert!(allowed(
        &single("{user: {in: [1, 12345]}}"),
        Some(&u),
        &get("/")
    ));
}

// ---- operators and actions -----------------------------------------------

/// Evaluates `op` over [accept/reject per bit] and returns the result.
fn op_result(op: &str, a: bool, b: bool) -> bool {
    let c = |x: bool| {
        if x {
            "{accept: true}"
        } else {
            "{reject: true}"
        }
    };
    let p = format!("allow:\n  {op}: [{}, {}]\n", c(a), c(b));
    allowed(&p, None, &get("/"))
}

#[test]
fn operator_truth_tables_follow_pomerium() {
    for (a, b) in [(false, false), (false, true), (true, false), (true, true)] {
        assert_eq!(op_result("and", a, b), a && b, "and {a} {b}");
        assert_eq!(op_result("or", a, b), a || b, "or {a} {b}");
        assert_eq!(op_result("not", a, b), !a && !b, "not {a} {b}");
        assert_eq!(op_result("nor", a, b), !a || !b, "nor {a} {b}");
    }
}

#[test]
fn several_operators_under_one_action_are_ored() {
    let p = "allow:\n  and: [{reject: true}]\n  or: [{accept: true}]\n";
    assert!(allowed(p, None, &get("/")));
    let p = "allow:\n  and: [{reject: true}]\n  or: [{reject: true}]\n";
    assert!(!allowed(p, None, &get("/")));
}

#[test]
fn empty_operator_is_ignored() {
    let p = "allow:\n  and: []\n  or: [{accept: true}]\n";
    assert!(allowed(p, None, &get("/")));
    assert!(!allowed("allow:\n  and: []\n", None, &get("/")));
}

#[test]
fn deny_wins_over_allow() {
    let a = alice();
    let p = "allow:\n  or: [{domain: example.com}]\ndeny:\n  or: [{email: alice@example.com}]\n";
    let d = decide(p, Some(&a), &get("/"), MONDAY_MORNING);
    assert!(!d.allow);
    assert_eq!(d.reason, "rule 1 deny matched");
}

#[test]
fn any_allow_rule_suffices_and_reason_names_the_first() {
    let p = "- allow: {or: [{reject: true}]}\n- allow: {or: [{accept: true}]}\n- allow: {or: [{accept: true}]}\n";
    let d = decide(p, None, &get("/"), MONDAY_MORNING);
    assert!(d.allow);
    assert_eq!(d.reason, "rule 2 allow matched");
}

#[test]
fn deny_in_a_later_rule_still_wins() {
    let p = "- allow: {or: [{accept: true}]}\n- deny: {or: [{http_method: POST}]}\n";
    let mut post = get("/");
    post.method = "POST";
    let d = decide(p, None, &post, MONDAY_MORNING);
    assert!(!d.allow);
    assert_eq!(d.reason, "rule 2 deny matched");
    assert!(allowed(p, None, &get("/")));
}

#[test]
fn no_matching_allow_denies_with_reason() {
    let d = decide(&single("{reject: true}"), None, &get("/"), MONDAY_MORNING);
    assert!(!d.allow);
    assert_eq!(d.reason, "no allow rule matched");
    assert!(!d.needs_login);
}

#[test]
fn only_deny_rules_deny_everything() {
    let d = decide(
        "deny: {or: [{reject: true}]}",
        None,
        &get("/"),
        MONDAY_MORNING,
    );
    assert!(!d.allow);
    assert_eq!(d.reason, "no allow rule matched");
}

#[test]
fn empty_program_denies_with_no_policy() {
    let d = Program::default().eval(&Facts {
        user: None,
        request: &get("/"),
        now: MONDAY_MORNING,
    });
    assert_eq!(
        d,
        Decision {
            allow: false,
            reason: "no policy".into(),
            needs_login: false,
            rule: None,
        }
    );
    assert!(compile("[]").unwrap().is_empty());
}

#[test]
fn nested_operators_evaluate() {
    let p =
        "allow:\n  and:\n    - or: [{reject: true}, {accept: true}]\n    - not: [{reject: true}]\n";
    assert!(allowed(p, None, &get("/")));
    let p = "allow:\n  and:\n    - or: [{reject: true}, {reject: true}]\n    - accept: true\n";
    assert!(!allowed(p, None, &get("/")));
}

// ---- sign-in -------------------------------------------------------------

#[test]
fn anonymous_request_to_user_policy_needs_login() {
    let d = decide(
        &single("{domain: example.com}"),
        None,
        &get("/"),
        MONDAY_MORNING,
    );
    assert!(!d.allow);
    assert!(d.needs_login);
}

#[test]
fn signed_in_user_who_fails_does_not_need_login() {
    let a = alice();
    let d = decide(
        &single("{domain: example.org}"),
        Some(&a),
        &get("/"),
        MONDAY_MORNING,
    );
    assert!(!d.allow && !d.needs_login);
}

#[test]
fn anonymous_request_failing_only_request_criteria_gets_no_login() {
    let d = decide(
        &single("{source_ip: 192.168.0.0/16}"),
        None,
        &get("/"),
        MONDAY_MORNING,
    );
    assert!(!d.allow && !d.needs_login);
}

#[test]
fn anonymous_request_failing_ip_and_user_criteria_needs_login() {
    // Like Pomerium, every failing child contributes its reason.
    let p = single("{source_ip: 192.168.0.0/16}\n    - {email: a@b.c}");
    let d = decide(&p, None, &get("/"), MONDAY_MORNING);
    assert!(!d.allow && d.needs_login);
}

#[test]
fn deny_over_missing_user_still_asks_for_login() {
    let p = "allow: {or: [{authenticated_user: true}]}\ndeny: {not: [{groups: admins}]}\n";
    let d = decide(p, None, &get("/"), MONDAY_MORNING);
    assert!(!d.allow && d.needs_login);
}

#[test]
fn needs_user_reports_user_criteria() {
    assert!(compile(&single("{claim/x: y}")).unwrap().needs_user());
    assert!(
        compile("deny: {not: [{email: a@b.c}]}")
            .unwrap()
            .needs_user()
    );
    assert!(
        !compile(&single("{source_ip: 10.0.0.0/8}"))
            .unwrap()
            .needs_user()
    );
    assert!(!Program::allow_all().needs_user());
}

// ---- built-in programs, merge, legacy -------------------------------------

#[test]
fn allow_all_and_deny_all_do_what_they_say() {
    let f = Facts {
        user: None,
        request: &get("/"),
        now: MONDAY_MORNING,
    };
    assert!(Program::allow_all().eval(&f).allow);
    assert!(!Program::deny_all().eval(&f).allow);
    let merged = Program::merge(vec![Program::allow_all(), Program::deny_all()]);
    let d = merged.eval(&f);
    assert!(!d.allow);
    assert_eq!(d.reason, "deny-all policy");
}

#[test]
fn merge_is_a_union_and_renumbers_rules() {
    let a = compile("allow: {or: [{http_path: /a}]}").unwrap();
    let b = compile("- allow: {or: [{http_path: /b}]}\n- allow: {or: [{http_path: /c}]}").unwrap();
    let m = Program::merge(vec![a, b]);
    let f = |p: &str| {
        m.eval(&Facts {
            user: None,
            request: &get(p),
            now: MONDAY_MORNING,
        })
    };
    assert_eq!(f("/a").reason, "rule 1 allow matched");
    assert_eq!(f("/c").reason, "rule 3 allow matched");
    assert!(!f("/d").allow);
    assert!(Program::merge(vec![]).is_empty());
}

#[test]
fn legacy_options_compile_to_pomerium_equivalents() {
    let mut claims = BTreeMap::new();
    claims.insert(
        "family_name".to_owned(),
        vec![json!("Jones"), json!("Smith")],
    );
    let legacy = Legacy {
        allowed_users: vec!["bob@example.com".into(), "u-carol".into()],
        allowed_domains: vec!["example.org".into()],
        allowed_idp_claims: claims,
    };
    let p = Program::from_legacy(&legacy);
    let f = |u: &User| {
        p.eval(&Facts {
            user: Some(u),
            request: &get("/"),
            now: MONDAY_MORNING,
        })
        .allow
    };
    let mut u = alice();
    assert!(f(&u), "claim family_name Smith");
    u.claims.clear();
    assert!(!f(&u));
    u.email = "bob@example.com".into();
    assert!(f(&u), "user entry matches email");
    u.email = "x@example.org".into();
    assert!(f(&u), "domain");
    u.email = "x@example.net".into();
    u.id = "u-carol".into();
    assert!(f(&u), "user entry matches id");
    assert!(p.needs_user());
    assert!(Program::from_legacy(&Legacy::default()).is_empty());
}

// ---- document forms -------------------------------------------------------

#[test]
fn json_text_compiles_like_yaml() {
    let json_text = "{\n\t\"allow\": {\"or\": [{\"email\": {\"is\": \"alice@example.com\"}}]}\n}";
    let yaml_text = "allow:\n  or:\n    - email:\n        is: alice@example.com\n";
    assert_eq!(compile(json_text).unwrap(), compile(yaml_text).unwrap());
    let v = json!([{"allow": {"or": [{"email": "alice@example.com"}]}}]);
    assert!(
        compile_value(&v)
            .unwrap()
            .eval(&Facts {
                user: Some(&alice()),
                request: &get("/"),
                now: MONDAY_MORNING
            })
            .allow
    );
}

#[test]
fn kubernetes_policy_object_compiles() {
    let object =
        "apiVersion: jetbridge.dev/v1\nkind: Policy\nspec:\n  allow: {or: [{accept: true}]}\n";
    let rules = "apiVersion: jetbridge.dev/v1\nkind: Policy\nspec:\n  rules:\n    - allow: {or: [{accept: true}]}\n";
    for text in [object, rules] {
        assert!(allowed(text, None, &get("/")), "{text}");
    }
    // The spec is an object, as the CRD and the controller require.
    let list = "apiVersion: jetbridge.dev/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  - allow: {or: [{accept: true}]}\n";
    assert_eq!(
        compile_err(list),
        "spec: expected an object with allow, deny and/or rules, found a list"
    );
    assert_eq!(
        compile_err("apiVersion: v1\nkind: Policy\nspec: {}"),
        "unsupported apiVersion \"v1\" (expected \"jetbridge.dev/v1\")"
    );
    assert_eq!(
        compile_err("apiVersion: jetbridge.dev/v1\nkind: Ingress\nspec: {}"),
        "unsupported kind \"Ingress\" (expected \"Policy\")"
    );
}

// ---- errors ----------------------------------------------------------------

#[test]
fn error_messages_point_at_the_place() {
    assert_eq!(
        compile_err(
            "- allow: {or: [{accept: true}]}\n- allow:\n    and:\n      - email: a@b.c\n      - emial: a@b.c\n"
        ),
        "rule 2, allow.and[1]: unknown criterion \"emial\" (did you mean \"email\"?)"
    );
    assert_eq!(
        compile_err("alow:\n  or: []\n"),
        "rule 1: unknown action \"alow\" (did you mean \"allow\"?)"
    );
    assert_eq!(
        compile_err("allow:\n  or:\n    - email:\n        iss: a@b.c\n"),
        "rule 1, allow.or[0].email: unknown matcher \"iss\" (did you mean \"is\"?)"
    );
    assert_eq!(
        compile_err("allow:\n  or:\n    - source_ip: [10.0.0.0/8, 10.0.0.0/33]\n"),
        "rule 1, allow.or[0].source_ip[1]: invalid IP address or CIDR range \"10.0.0.0/33\""
    );
    assert_eq!(
        compile_err("allow:\n  or:\n    - time_of_day: {timezone: UTC, after: '25:00'}\n"),
        "rule 1, allow.or[0].time_of_day.after: invalid time \"25:00\" (expected e.g. \"9:00\", \"17:30:00\", \"5:30PM\" or \"5 PM\")"
    );
    assert_eq!(
        compile_err("allow:\n  andd: []\n"),
        "rule 1, allow: unknown operator \"andd\" (did you mean \"and\"?)"
    );
}

#[test]
fn more_errors_are_specific() {
    let cases = [
        (
            "allow:\n  or:\n    - day_of_week: mon-fry\n",
            "unknown day \"fry\"",
        ),
        (
            "allow:\n  or:\n    - time_of_day: {timezone: America/Phoenix, after: '9:00'}\n",
            "named zones",
        ),
        (
            "allow:\n  or:\n    - time_of_day: {after: '9:00'}\n",
            "timezone is required",
        ),
        (
            "allow:\n  or:\n    - email: a@b.c\n      domain: b.c\n",
            "exactly one key",
        ),
        (
            "allow:\n  or: {email: a@b.c}\n",
            "expected a list of criteria",
        ),
        (
            "allow:\n  email: a@b.c\n",
            "must sit inside an operator list",
        ),
        (
            "allow: [{email: a@b.c}]\n",
            "expected an object of operators",
        ),
        ("allow:\n  or:\n    - email: [a@b.c, d@e.f]\n", "in: [...]"),
        ("allow:\n  or:\n    - accept: false\n", "would still match"),
        (
            "allow:\n  or:\n    - claim: x\n",
            "claim needs a claim name",
        ),
        ("allow:\n  or:\n    - email/x: a\n", "takes no sub-path"),
        (
            "allow:\n  or:\n    - device: {type: any}\n",
            "does not support",
        ),
        (
            "allow:\n  or:\n    - groups: {has: [a, b]}\n",
            "expected a single value",
        ),
        (
            "allow:\n  or:\n    - date: {after: yesterday}\n",
            "invalid date",
        ),
        ("42", "expected a rule object or a list of rule objects"),
        ("", "the policy is empty"),
        ("- 3\n", "rule 1: expected a rule object"),
    ];
    for (policy, want) in cases {
        let e = compile_err(policy);
        assert!(e.contains(want), "{policy:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn yaml_syntax_errors_report_line_and_column() {
    let e = compile("allow:\n  or: [\n").unwrap_err();
    match e {
        PolicyError::Syntax { line, column, .. } => {
            assert!(line >= 2, "line {line}");
            assert!(column >= 1, "column {column}");
        }
        other => panic!("expected a syntax error, got {other}"),
    }
    assert_eq!(
        compile("a: b: c").unwrap_err().to_string(),
        "syntax error at line 1, column 5: mapping values are not allowed in this context"
    );
}

#[test]
fn deep_nesting_is_refused_with_a_clear_error() {
    let mut inner = String::from("{accept: true}");
    for _ in 0..40 {
        inner = format!("{{and: [{inner}]}}");
    }
    let e = compile(&format!("allow: {{or: [{inner}]}}")).unwrap_err();
    assert!(
        matches!(e, PolicyError::TooDeep { .. } | PolicyError::Syntax { .. }),
        "{e}"
    );
    let mut v = json!({"accept": true});
    for _ in 0..100 {
        v = json!({"and": [v]});
    }
    let e = compile_value(&json!({"allow": {"or": [v]}})).unwrap_err();
    assert!(matches!(e, PolicyError::TooDeep { max: 16, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("operators nest deeper than 16 levels")
    );
}

// ---- warnings and CLI ------------------------------------------------------

#[test]
fn check_reports_lints() {
    let (code, out) = check_command(
        "- {}\n- allow:\n    and: [{reject: true}]\n- allow:\n    not: [{email: a@b.c}]\n- deny:\n    or: [{accept: true}]\n",
    );
    assert_eq!(code, 1, "{out}");
    for want in [
        "warning: rule 1: the rule has no allow or deny action",
        "warning: rule 2, allow.and[0].reject: `reject` under allow never matches",
        "warning: rule 3, allow.not[0].email: `not`/`nor` over \"email\" also matches visitors",
        "warning: rule 4, deny.or[0].accept: `accept` under deny matches every request",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(
        check_command(&single("{accept: true}")),
        (0, "ok: 1 rule".into())
    );
    assert_eq!(check_command("alow: {}").0, 2);
    let (code, out) = check_command(
        "allow:\n  and:\n    - or: [{http_method: get}]\n    - email: Bob@Example.com\n",
    );
    assert_eq!(code, 1, "{out}");
    for want in [
        "warning: rule 1, allow.and[0]: nested operator \"or\" is a jetbridge extension",
        "warning: rule 1, allow.and[0].or[0].http_method: HTTP methods are compared case-sensitively",
        "warning: rule 1, allow.and[1].email: email values are compared case-sensitively",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(
        check_command("[]"),
        (
            1,
            "warning: the policy has no rules and denies every request".into()
        )
    );
}

#[test]
fn eval_command_prints_decision_and_exit_code() {
    let policy = "allow:\n  and:\n    - domain: example.com\n    - time_of_day: {timezone: UTC, after: '9:00', before: '17:00'}\n";
    let now = datetime!(2024-01-01 03:00 UTC);
    let input = r#"{"user": {"id": "u1", "email": "a@example.com"},
                    "request": {"method": "GET", "path": "/", "source_ip": "10.0.0.1",
                                "headers": {"Origin": "x"}},
                    "time": "2024-01-01T10:00:00Z"}"#;
    assert_eq!(
        eval_command(policy, input, now),
        (0, "allow: rule 1 allow matched".into())
    );
    // Without "time" the caller's now (03:00) is used.
    let input = r#"{"user": {"email": "a@example.com"}, "request": {}}"#;
    assert_eq!(
        eval_command(policy, input, now),
        (1, "deny: no allow rule matched".into())
    );
    assert_eq!(
        eval_command(policy, r#"{"user": null}"#, now),
        (1, "deny: no allow rule matched (sign-in required)".into())
    );
    let (code, out) = eval_command(policy, "{", now);
    assert_eq!(code, 2);
    assert!(out.starts_with("error: input:"), "{out}");
    let (code, out) = eval_command("alow: {}", "{}", now);
    assert_eq!(code, 2);
    assert!(
        out.starts_with("error: policy: rule 1: unknown action"),
        "{out}"
    );
    let (code, out) = eval_command(policy, r#"{"time": "yesterday"}"#, now);
    assert_eq!(code, 2);
    assert!(out.contains("not RFC 3339"), "{out}");
}

#[test]
fn eval_command_lowercases_header_names() {
    let input = r#"{"request": {"method": "OPTIONS", "headers": {"Origin": "x", "Access-Control-Request-Method": "GET"}}}"#;
    let (code, _) = eval_command(&single("{cors_preflight: true}"), input, MONDAY_MORNING);
    assert_eq!(code, 0);
}

// ---- robustness ------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "allow",
            "deny",
            "and",
            "or",
            "not",
            "nor",
            "email",
            "is",
            "has",
            "in",
            "accept",
            "claim/x",
            "source_ip",
            "10.0.0.0/8",
            "mon-fri",
            "9:00",
            "UTC",
            "time_of_day",
            "day_of_week",
            "groups",
            "date",
            "after",
            "before",
            "timezone",
            "x",
            "",
        ])
        .prop_map(|s| json!(s)),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        let keys = prop::sample::select(vec![
            "allow",
            "deny",
            "and",
            "or",
            "not",
            "nor",
            "email",
            "domain",
            "user",
            "groups",
            "claim/a",
            "claim/a/b",
            "http_method",
            "http_path",
            "source_ip",
            "cors_preflight",
            "day_of_week",
            "time_of_day",
            "date",
            "accept",
            "reject",
            "authenticated_user",
            "is",
            "not_in",
            "in",
            "has",
            "exclude",
            "starts_with",
            "timezone",
            "after",
            "before",
            "days",
            "rules",
            "spec",
            "kind",
            "apiVersion",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..3).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = compile(&text);
        let _ = check_command(&text);
    }

    #[test]
    fn calendar_parsers_never_panic(text in "\\PC{0,24}", ascii in "[-+:.0-9 apmAPMUTCZa-z,*]{0,16}") {
        for t in [&text, &ascii] {
            let _ = super::schedule::parse_time(t);
            let _ = super::schedule::parse_tz(t);
            let _ = super::schedule::parse_days(t);
            let _ = super::schedule::parse_datetime(t);
        }
    }

    #[test]
    fn arbitrary_yaml_like_text_never_panics(text in "[-a-z_/{}\\[\\]:, \n'\"0-9.*@]{0,200}") {
        if let Ok(p) = compile(&text) {
            let _ = p.eval(&Facts { user: None, request: &get("/"), now: MONDAY_MORNING });
        }
    }

    #[test]
    fn arbitrary_json_never_panics_compile_or_eval(v in arb_json(), secs in any::<i32>()) {
        if let Ok(p) = compile_value(&v) {
            let now = OffsetDateTime::from_unix_timestamp(i64::from(secs)).unwrap();
            let a = alice();
            for user in [None, Some(&a)] {
                let d = p.eval(&Facts { user, request: &get("/x"), now });
                prop_assert!(!(d.allow && d.needs_login));
            }
        }
    }
}

/// A `Policy` spec may hold `allow`/`deny` (rule 1) and `rules` (rules 2…)
/// together, as a file, an annotation or a watched object alike; fields
/// other than those three are refused by name.
#[test]
fn a_policy_spec_with_allow_and_rules_compiles_the_same_everywhere() {
    let spec = json!({
        "allow": {"or": [{"domain": {"is": "example.com"}}]},
        "rules": [{"deny": {"or": [{"email": {"ends_with": "@contractor.example.com"}}]}}]
    });
    let object = json!({"apiVersion": "jetbridge.dev/v1", "kind": "Policy",
                        "metadata": {"name": "staff"}, "spec": spec.clone()});
    let rules = spec_rules(&spec).unwrap();
    assert_eq!(rules.as_array().unwrap().len(), 2);
    let from_object = compile_value(&object).unwrap();
    assert_eq!(compile_value(&rules).unwrap(), from_object);
    assert_eq!(compile_value(&spec).unwrap(), from_object);
    assert_eq!(
        compile(&serde_json::to_string(&object).unwrap()).unwrap(),
        from_object
    );
    let mut staff = alice();
    staff.email = "bob@contractor.example.com".into();
    let decide = |p: &Program, u: &User| {
        p.eval(&Facts {
            user: Some(u),
            request: &get("/"),
            now: MONDAY_MORNING,
        })
    };
    let mut insider = alice();
    insider.email = "carol@example.com".into();
    assert!(decide(&from_object, &insider).allow);
    let d = decide(&from_object, &staff);
    assert_eq!((d.allow, d.reason.as_str()), (false, "rule 2 deny matched"));
    assert_eq!(check_command(&serde_json::to_string(&object).unwrap()).0, 0);

    let typo = json!({"apiVersion": "jetbridge.dev/v1", "kind": "Policy",
                      "spec": {"allow": {"or": [{"accept": true}]}, "rulez": []}});
    let e = compile_value(&typo).unwrap_err().to_string();
    assert_eq!(
        e,
        "spec: unknown field \"rulez\"; a spec holds allow, deny and rules (did you mean \"rules\"?)"
    );
    let typo = json!({"rules": [], "alow": {}});
    let e = compile_value(&typo).unwrap_err().to_string();
    assert_eq!(
        e,
        "spec: unknown field \"alow\"; a spec holds allow, deny and rules (did you mean \"allow\"?)"
    );
    let e = compile_value(&json!({"rules": {"allow": {}}}))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "spec: rules: expected a list of rule objects, found an object"
    );
    // Null fields are absent ones, as in the watched object.
    let nulls =
        json!({"allow": null, "deny": null, "rules": [{"allow": {"or": [{"accept": true}]}}]});
    assert_eq!(spec_rules(&nulls).unwrap().as_array().unwrap().len(), 1);
    // An empty spec is no rules: everything is denied, with a warning.
    let (p, w) = compile_value_with_warnings(&json!({"apiVersion": "jetbridge.dev/v1",
        "kind": "Policy", "spec": {}}))
    .unwrap();
    assert!(p.is_empty());
    let w: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert_eq!(w, ["the policy has no rules and denies every request"]);
}

fn with_email(email: &str) -> User {
    let mut u = alice();
    u.email = email.into();
    u
}

/// `domain` reads the domain of a single `local@domain` address only:
/// anything else matches no `domain` (or `email`) criterion in any
/// polarity, so the program denies. Domains compare case-insensitively and
/// as punycode.
#[test]
fn domain_criteria_read_only_a_single_local_at_domain_address() {
    let is = single("{domain: {is: example.com}}");
    let table: &[(&str, bool)] = &[
        ("alice@example.com", true),
        ("Alice@EXAMPLE.com", true),
        ("alice@example.COM", true),
        ("x@evil.com@example.com", false),
        ("x@example.com@evil.com", false),
        ("\"a@b\"@example.com", false),
        ("alice@example.com.", false),
        ("alice@.example.com", false),
        ("alice@example..com", false),
        ("alice@", false),
        ("@example.com", false),
        ("alice@ example.com", false),
        ("alice @example.com", false),
        (" alice@example.com", false),
        ("alice@example.com\n", false),
        ("alice@exam\tple.com", false),
        ("alice@example.com%00", false),
        ("alice@[127.0.0.1]", false),
        ("alice@exаmple.com", false),        // Cyrillic "а"
        ("alice@example\u{3002}com", false), // ideographic full stop
        ("alice@\u{ff45}xample.com", false), // full-width "e"
        ("alice", false),
        ("", false),
    ];
    for (email, want) in table {
        assert_eq!(
            allowed(&is, Some(&with_email(email)), &get("/")),
            *want,
            "{email:?}"
        );
    }
    // No polarity lets a malformed address through: a deny rule on the
    // domain, `not`, and the legacy allowed_domains all deny it.
    let smuggled = with_email("x@example.com@evil.com");
    for policy in [
        "allow:\n  or: [{accept: true}]\ndeny:\n  or: [{domain: {is: evil.com}}]\n".to_string(),
        single("{domain: {not: evil.com}}"),
        "allow:\n  not: [{domain: evil.com}]\n".to_string(),
        single("{email: {ends_with: \"@evil.com\"}}"),
    ] {
        let d = decide(&policy, Some(&smuggled), &get("/"), MONDAY_MORNING);
        assert!(!d.allow, "{policy}");
        assert_eq!(
            d.reason, "the user's email address is not a single local@domain",
            "{policy}"
        );
    }
    let legacy = Program::from_legacy(&Legacy {
        allowed_domains: vec!["Example.COM".into()],
        ..Legacy::default()
    });
    let eval = |u: &User| {
        legacy
            .eval(&Facts {
                user: Some(u),
                request: &get("/"),
                now: MONDAY_MORNING,
            })
            .allow
    };
    assert!(eval(&with_email("a@example.com")));
    assert!(!eval(&with_email("x@evil.com@example.com")));
    // A program without email or domain criteria does not look.
    assert!(allowed(
        &single("{user: {is: u-alice}}"),
        Some(&smuggled),
        &get("/")
    ));
    // A user without an address matches no domain, and is not refused
    // outright (other rules may still let them in).
    let either = "allow:\n  or: [{domain: example.com}, {user: u-alice}]\n";
    assert!(allowed(either, Some(&with_email("")), &get("/")));
    assert!(!allowed(&is, Some(&with_email("")), &get("/")));
}

#[test]
fn domains_compare_as_punycode_and_in_lower_case() {
    for policy in [
        "{domain: {is: bücher.example}}",
        "{domain: {is: xn--bcher-kva.example}}",
        "{domain: {is: BÜCHER.Example}}",
        "{domain: {ends_with: .example}}",
        "{domain: {in: [other.example, Bücher.example]}}",
    ] {
        for email in [
            "max@bücher.example",
            "max@xn--bcher-kva.example",
            "max@BÜCHER.EXAMPLE",
        ] {
            assert!(
                allowed(&single(policy), Some(&with_email(email)), &get("/")),
                "{policy} {email}"
            );
        }
    }
    assert!(!allowed(
        &single("{domain: {is: bucher.example}}"),
        Some(&with_email("max@bücher.example")),
        &get("/")
    ));
}

/// An address the identity provider marks unverified is not trusted by
/// `email` or `domain` criteria; an absent claim does not count against it.
#[test]
fn an_unverified_email_matches_no_email_or_domain_criterion() {
    let by_domain = single("{domain: {is: example.com}}");
    let by_email = single("{email: {is: alice@example.com}}");
    for (verified, want) in [
        (Some(json!(true)), true),
        (Some(json!("true")), true),
        (None, true),
        (Some(json!(false)), false),
        (Some(json!("false")), false),
        (Some(json!("FALSE")), false),
    ] {
        let mut u = alice();
        match &verified {
            Some(v) => u.claims.insert("email_verified".into(), v.clone()),
            None => u.claims.remove("email_verified"),
        };
        for policy in [&by_domain, &by_email] {
            let d = decide(policy, Some(&u), &get("/"), MONDAY_MORNING);
            assert_eq!(d.allow, want, "{verified:?} {policy}");
            if !want {
                assert_eq!(
                    d.reason,
                    "the identity provider says the user's email address is not verified"
                );
            }
        }
    }
    let mut u = alice();
    u.claims.insert("email_verified".into(), json!(false));
    assert!(allowed(
        &single("{user: {is: u-alice}}"),
        Some(&u),
        &get("/")
    ));
}

proptest! {
    /// Whatever the address, reading its domain never panics, and a domain
    /// read is lower-case ASCII letters, digits, `-` and inner dots, taken
    /// from an address with exactly one `@`.
    #[test]
    fn any_address_reads_as_a_clean_domain_or_none(
        email in "\\PC{0,40}",
        shaped in "[a-zA-Z0-9@. \"\u{e4}\u{3002}\u{ff45}-]{0,30}",
    ) {
        for e in [&email, &shaped] {
            if let Some(d) = super::address::domain(e) {
                prop_assert_eq!(e.matches('@').count(), 1);
                prop_assert!(!d.is_empty() && !d.starts_with('.') && !d.ends_with('.'));
                prop_assert!(!d.contains(".."));
                prop_assert!(d.chars().all(|c| c.is_ascii_lowercase()
                    || c.is_ascii_digit() || c == '-' || c == '.'), "{}", d);
            }
            let _ = super::address::domain_literal(e);
        }
    }
}
