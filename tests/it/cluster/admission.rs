//! What the API server refuses at `kubectl apply`, before the controller
//! sees it: the Policy CRD's schema (unknown top-level keys of `spec`, wrong
//! types, more keys than an action or a rule can hold), and the chart's
//! ValidatingAdmissionPolicy for the annotations of Ingresses of the chart's
//! IngressClass (unknown keys under the prefixes, sizes, booleans, durations,
//! `policy_ref` names). Each refusal is checked with its message, each valid
//! variant is checked to pass, and the policy's key lists and value patterns
//! are checked against the controller's own reading of the same annotations,
//! so the two cannot drift apart. What the API server cannot refuse (operator
//! nesting past the engine's limit) is checked to be reported by the
//! controller after apply.

use crate::harness;
use harness::cluster::*;
use jetbridge::translate::cluster::{
    ClusterSettings, DELEGATE_PATHS, MAX_ANNOTATION_BYTES, SECRET_ANNOTATIONS, from_cluster,
    route_annotations,
};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

const TEMPLATE: &str = "templates/admission-policy.yaml";
const VAP_API: &str = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy";
const PREFIXES: [&str; 2] = ["jetbridge.dev/", "ingress.pomerium.io/"];

fn chart() -> String {
    format!("{}/charts/jetbridge", env!("CARGO_MANIFEST_DIR"))
}

/// The quoted names of the CEL list held by the policy's variable `name`,
/// read from the chart's template.
fn policy_list(name: &str) -> BTreeSet<String> {
    let path = format!("{}/{TEMPLATE}", chart());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    list_in(&text, name)
}

/// The quoted names of the CEL list held by the variable `name` in `text`.
fn list_in(text: &str, name: &str) -> BTreeSet<String> {
    let at = text
        .find(&format!("- name: {name}\n"))
        .unwrap_or_else(|| panic!("no variable {name} in {text}"));
    let rest = &text[at..];
    let (open, close) = (rest.find('[').unwrap(), rest.find(']').unwrap());
    let list: BTreeSet<String> = rest[open + 1..close]
        .split(',')
        .map(|s| s.trim().trim_matches('\'').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(!list.is_empty(), "variable {name} is empty");
    list
}

fn set(items: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

/// What the controller finds wrong on an Ingress of its class carrying the
/// one annotation `key: value` (empty: it reads it without complaint).
fn controller_problems(key: &str, value: &str) -> Vec<String> {
    let mut annotations = serde_json::Map::new();
    annotations.insert(key.to_string(), value.into());
    let c = super::annotation_prefixes::one_ingress(annotations);
    let out = from_cluster(&c, &ClusterSettings::default());
    let mut problems: Vec<String> = out
        .routes
        .iter()
        .flat_map(|r| r.problems.iter().map(|d| d.message.clone()))
        .collect();
    problems.extend(
        out.diagnostics
            .iter()
            .filter(|d| d.severity == jetbridge::model::Severity::Error)
            .map(|d| d.message.clone()),
    );
    problems
}

fn controller_accepts(key: &str, value: &str) -> bool {
    controller_problems(key, value).is_empty()
}

#[test]
fn the_policys_annotation_lists_are_the_ones_the_controller_reads() {
    assert!(
        controller_accepts("jetbridge.dev/allow_websockets", "true"),
        "the probe Ingress itself is sound"
    );
    let known = policy_list("known");
    let tables: BTreeSet<String> = route_annotations()
        .chain(SECRET_ANNOTATIONS)
        .chain([DELEGATE_PATHS])
        .map(String::from)
        .collect();
    let missing: Vec<_> = tables.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "read by the controller, refused as unknown by the policy: {missing:?}"
    );
    for k in &known {
        for p in PREFIXES {
            let problems = controller_problems(&format!("{p}{k}"), "x");
            assert!(
                !problems.iter().any(|m| m.starts_with("unknown annotation")),
                "{p}{k} is in the policy's list but unknown to the controller: {problems:?}"
            );
        }
    }
    // The probe tells an unknown key apart.
    assert!(!known.contains("allow_websocket"));
    let typo = controller_problems("jetbridge.dev/allow_websocket", "true");
    assert!(
        typo.iter().any(|m| m.starts_with("unknown annotation")),
        "{typo:?}"
    );

    // Booleans and durations, by what the controller accepts.
    let accepts = |k: &str, v: &str| controller_accepts(&format!("jetbridge.dev/{k}"), v);
    let booleans: BTreeSet<String> = known
        .iter()
        .filter(|k| accepts(k, "true") && accepts(k, "false") && !accepts(k, "maybe"))
        .cloned()
        .collect();
    assert_eq!(booleans, policy_list("booleans"), "boolean annotations");
    let durations: BTreeSet<String> = known
        .iter()
        .filter(|k| {
            accepts(k, "30s") && accepts(k, "1m30s") && !accepts(k, "30x") && !accepts(k, "true")
        })
        .cloned()
        .collect();
    assert_eq!(durations, policy_list("durations"), "duration annotations");
}

#[test]
fn the_policys_size_limit_is_the_controllers() {
    let path = format!("{}/{TEMPLATE}", chart());
    let text = std::fs::read_to_string(&path).unwrap();
    let limit = MAX_ANNOTATION_BYTES.to_string();
    assert_eq!(
        text.matches(&format!("> {limit})")).count(),
        1,
        "the size check in {path} compares with {limit}"
    );
    let over = "a".repeat(MAX_ANNOTATION_BYTES + 1);
    let problems = controller_problems("jetbridge.dev/description", &over);
    assert!(
        problems
            .iter()
            .any(|m| m.contains(&format!("larger than {limit}"))),
        "{problems:?}"
    );
    assert!(controller_accepts(
        "jetbridge.dev/description",
        &"a".repeat(MAX_ANNOTATION_BYTES)
    ));
}

/// The run's API server, which must serve ValidatingAdmissionPolicy
/// (Kubernetes 1.30+): on an older one these checks cannot be made, and a
/// pass would claim what was not shown.
fn kube() -> Kube {
    let kube = Kube::get();
    let version = kube.env.get("KUBE_VERSION").cloned().unwrap_or_default();
    let minor: u32 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        minor >= 30,
        "admission checks need Kubernetes 1.30 or newer; this API server is {version:?} \
         (start it with JETBRIDGE_KUBE_VERSION=1.37.2)"
    );
    kube
}

/// A cluster of this test's own, of the run's version (for a test that
/// swaps the CRD, which would disturb the others).
fn own_kube() -> Kube {
    let version = kube().env["KUBE_VERSION"].clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_string_lossy().into_owned();
    let out = Command::new(script())
        .args(["start", &dir])
        .env("JETBRIDGE_KUBE_VERSION", &version)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/cluster start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Kube {
        env: Kube::read_env(&dir),
        dir,
        own: Some(tmp),
    }
}

/// Renders the chart's policy template with `args` (e.g. `--set k=v`).
fn render(kube: &Kube, release: &str, args: &[&str]) -> String {
    render_chart(kube, release, &[&["-s", TEMPLATE], args].concat())
}

/// Renders the whole chart with `args`.
fn render_chart(kube: &Kube, release: &str, args: &[&str]) -> String {
    let out = Command::new(&kube.env["HELM"])
        .args(["template", release, &chart()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The chart's ValidatingAdmissionPolicy and binding for one corner's
/// IngressClass, installed from `helm template`; removed on drop.
struct Vap<'c> {
    corner: &'c Corner,
    yaml: String,
}

impl<'c> Vap<'c> {
    fn install(corner: &'c Corner, extra: &[&str]) -> Vap<'c> {
        let class = format!("ingressClass.name={}", corner.class);
        let mut args = vec!["--api-versions", VAP_API, "--set", &class];
        args.extend_from_slice(extra);
        let yaml = render(&corner.kube, &corner.class, &args);
        assert!(
            yaml.contains("kind: ValidatingAdmissionPolicyBinding"),
            "{yaml}"
        );
        corner.kube.ok(&["apply", "-f", "-"], Some(&yaml));
        let vap = Vap { corner, yaml };
        vap.wait_until_enforced();
        vap
    }

    /// The API server enforces a new policy once its informer has it: wait
    /// until an unknown key is refused.
    fn wait_until_enforced(&self) {
        let prefix = list_in(&self.yaml, "prefixes").pop_first().unwrap();
        let key = format!("{prefix}not_a_key");
        let probe = ingress(
            &self.corner.ns,
            "probe",
            Some(&self.corner.class),
            &[(&key, "x")],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, _, err) = self
                .corner
                .kube
                .kubectl(&["create", "--dry-run=server", "-f", "-"], Some(&probe));
            if !ok && err.contains("unknown annotation") {
                return;
            }
            assert!(Instant::now() < deadline, "policy not enforced: {err}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Vap<'_> {
    fn drop(&mut self) {
        let _ = self.corner.kube.kubectl(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&self.yaml),
        );
    }
}

/// An Ingress as JSON: `class` in `spec.ingressClassName` (none: no class).
fn ingress(ns: &str, name: &str, class: Option<&str>, annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let mut spec = serde_json::json!({
        "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}
    });
    if let Some(class) = class {
        spec["ingressClassName"] = class.into();
    }
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": spec
    })
    .to_string()
}

/// `kubectl apply` of one Ingress of the corner's class: Ok, or the refusal.
fn apply_ingress(c: &Corner, name: &str, annotations: &[(&str, &str)]) -> Result<(), String> {
    let doc = ingress(&c.ns, name, Some(&c.class), annotations);
    match c.kube.kubectl(&["apply", "-f", "-"], Some(&doc)) {
        (true, _, _) => Ok(()),
        (false, out, err) => Err(format!("{err}{out}")),
    }
}

#[test]
fn bad_ingress_annotations_are_refused_at_apply_naming_the_annotation() {
    let c = Corner::new(kube());
    let _vap = Vap::install(&c, &[]);
    let large = "a".repeat(MAX_ANNOTATION_BYTES + 1);
    let (boolean, duration) = ("expected true or false", "expected a duration such as 30s");
    let names = "expected names of Policy objects";
    let unknown = "jetbridge reads no key allow_websocket under";
    let too_large = "value of 65537 bytes is larger than 65536";
    let refused: &[(&str, &str, &str)] = &[
        ("allow_websockets", "maybe", boolean),
        ("pass_identity_headers", "\"true\"", boolean),
        ("secure_upstream", "", boolean),
        ("timeout", "30x", duration),
        ("idle_timeout", "1d", duration),
        ("timeout", "", duration),
        ("policy_ref", "other/staff", names),
        ("policy_ref", "Staff", names),
        ("policy_ref", "a;b", names),
        ("policy_ref", &format!("ok,{}", "a".repeat(254)), names),
        ("allow_websocket", "true", unknown),
        ("description", &large, too_large),
    ];
    for prefix in PREFIXES {
        for (i, (key, value, want)) in refused.iter().enumerate() {
            let full = format!("{prefix}{key}");
            let err = apply_ingress(&c, &format!("bad-{i}"), &[(&full, value)])
                .expect_err(&format!("{full}: {value:?} was accepted"));
            assert!(
                err.contains(&format!("annotation {full}: ")),
                "{full}: the refusal names the annotation: {err}"
            );
            assert!(err.contains(want), "{full}: {value:?}: {err}");
            assert!(
                !controller_accepts(&full, value),
                "{full}: {value:?} is refused at apply but read by the controller"
            );
        }
    }
    let accepted: &[(&str, &str)] = &[
        ("allow_websockets", "true"),
        ("pass_identity_headers", "False"),
        ("timeout", "1m30s"),
        ("idle_timeout", "300"),
        ("policy_ref", "staff, team-a.ops  b"),
        ("policy_ref", &format!("ok,{}", "a".repeat(253))),
        // The most names one value holds, within the API server's CEL budget.
        ("policy_ref", &"a,".repeat(MAX_ANNOTATION_BYTES / 2)),
        ("policy_ref", ""),
        ("policy", "allow: {or: [{email: {is: a@example.com}}]}"),
        ("set_request_headers", "{X-A: one}"),
        ("description", &large[1..]),
    ];
    for prefix in PREFIXES {
        for (i, (key, value)) in accepted.iter().enumerate() {
            let full = format!("{prefix}{key}");
            if let Err(e) = apply_ingress(&c, &format!("good-{i}"), &[(&full, value)]) {
                panic!("{full}: {value:?} refused: {e}");
            }
        }
    }
}

/// Boolean and duration values, each under each prefix, in one request per
/// value: the API server refuses exactly what the controller refuses, but
/// for the cases listed here, where the policy knowingly differs.
#[test]
fn boolean_and_duration_values_are_refused_exactly_when_the_controller_refuses_them() {
    let c = Corner::new(kube());
    let _vap = Vap::install(&c, &[]);
    let booleans = [
        "true",
        "false",
        "True",
        "FALSE",
        " true",
        "false ",
        "tRUE",
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "n",
        "1",
        "0",
        "",
        "maybe",
        "yess",
        "\"true\"",
        "'false'",
        "[true]",
        "true false",
        "null",
        "~",
    ];
    let durations = [
        "30s",
        "1m30s",
        "250ms",
        "1.5h",
        "2h45m10.5s",
        "30",
        "0",
        "0s",
        " 30s ",
        "\"30s\"",
        "'1m'",
        "1µs",
        "10us",
        "100ns",
        ".5s",
        "1.s",
        "",
        "30x",
        "s",
        "1.2.3s",
        "-1s",
        "1d",
        "30 s",
        "1e3s",
        "30S",
        "1h 30m",
        "PT30S",
        "true",
        "null",
        "1.5",
    ];
    let mut cases: Vec<(String, &str)> = Vec::new();
    for prefix in PREFIXES {
        for k in policy_list("booleans") {
            cases.extend(booleans.iter().map(|v| (format!("{prefix}{k}"), *v)));
        }
        for k in policy_list("durations") {
            cases.extend(durations.iter().map(|v| (format!("{prefix}{k}"), *v)));
        }
    }
    let items: Vec<serde_json::Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let doc = ingress(&c.ns, &format!("v-{i}"), Some(&c.class), &[(k, v)]);
            serde_json::from_str(&doc).unwrap()
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let (_, out, err) = c.kube.kubectl(
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        Some(&list.to_string()),
    );
    let admitted: BTreeSet<usize> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ingress.networking.k8s.io/v-"))
        .map(|n| n.parse().unwrap())
        .collect();
    let refused = err.matches("denied request").count();
    assert_eq!(
        admitted.len() + refused,
        cases.len(),
        "every object is admitted or refused by the policy:\n{err}"
    );
    let mut differ = BTreeSet::new();
    for (i, (k, v)) in cases.iter().enumerate() {
        let short = k.rsplit('/').next().unwrap();
        if admitted.contains(&i) != controller_accepts(k, v) {
            differ.insert(format!(
                "{short}={v:?}: apiserver {}",
                if admitted.contains(&i) {
                    "admits"
                } else {
                    "refuses"
                }
            ));
        }
    }
    // pass_identity_headers is optional: YAML null reads as unset; the
    // policy asks for true or false.
    let expected = set([
        "pass_identity_headers=\"null\": apiserver refuses",
        "pass_identity_headers=\"~\": apiserver refuses",
    ]);
    assert_eq!(differ, expected);
}

#[test]
fn only_ingresses_of_the_charts_class_are_checked() {
    let c = Corner::new(kube());
    let _vap = Vap::install(&c, &[]);
    let bad = [("jetbridge.dev/allow_websockets", "maybe")];
    let create = |name: &str, class: Option<&str>, extra: &[(&str, &str)]| {
        let mut annotations = bad.to_vec();
        annotations.extend_from_slice(extra);
        let doc = ingress(&c.ns, name, class, &annotations);
        c.kube.kubectl(&["apply", "-f", "-"], Some(&doc))
    };
    let (ok, _, err) = create("other-class", Some("nginx"), &[]);
    assert!(ok, "another controller's Ingress is not touched: {err}");
    let (ok, _, err) = create("no-class", None, &[]);
    assert!(
        ok,
        "without a class (not the default) it is not ours: {err}"
    );
    let legacy = [("kubernetes.io/ingress.class", c.class.as_str())];
    let (ok, _, err) = create("legacy-class", None, &legacy);
    assert!(!ok && err.contains("expected true or false"), "{err}");
    let (ok, _, err) = create("ours", Some(&c.class), &[]);
    assert!(!ok && err.contains("expected true or false"), "{err}");
}

#[test]
fn a_default_class_checks_ingresses_without_a_class_too() {
    let c = Corner::new(kube());
    let _vap = Vap::install(&c, &["--set", "ingressClass.default=true"]);
    let doc = ingress(
        &c.ns,
        "no-class",
        None,
        &[("jetbridge.dev/timeout", "soon")],
    );
    let (ok, _, err) = c.kube.kubectl(&["apply", "-f", "-"], Some(&doc));
    assert!(!ok && err.contains("expected a duration"), "{err}");
    let doc = ingress(
        &c.ns,
        "nginx",
        Some("nginx"),
        &[("jetbridge.dev/timeout", "soon")],
    );
    let (ok, _, err) = c.kube.kubectl(&["apply", "-f", "-"], Some(&doc));
    assert!(ok, "{err}");
}

#[test]
fn the_annotation_prefix_value_sets_the_prefixes_checked() {
    let c = Corner::new(kube());
    let _vap = Vap::install(&c, &["--set", "annotationPrefix={example.com}"]);
    let err = apply_ingress(&c, "a", &[("example.com/timeout", "soon")]).unwrap_err();
    assert!(
        err.contains("annotation example.com/timeout: expected a duration"),
        "{err}"
    );
    // The controller reads no other prefix then: the defaults are not checked.
    apply_ingress(&c, "b", &[("jetbridge.dev/timeout", "soon")]).unwrap();
    apply_ingress(&c, "c", &[("ingress.pomerium.io/bogus", "x")]).unwrap();
}

#[test]
fn an_ingress_stored_before_the_policy_can_still_be_updated() {
    let c = Corner::new(kube());
    apply_ingress(&c, "old", &[("jetbridge.dev/timeout", "soon")]).unwrap();
    let _vap = Vap::install(&c, &[]);
    // Other changes pass, such as the status the controller writes…
    let patch = r#"{"metadata": {"annotations": {"jetbridge.dev/status": "{}", "team": "a"}}}"#;
    let (ok, _, err) = c.kube.kubectl(
        &[
            "patch",
            "ingress",
            "old",
            "-n",
            &c.ns,
            "--type=merge",
            "-p",
            patch,
        ],
        None,
    );
    assert!(ok, "{err}");
    // …a fix passes, and a new bad value is refused.
    let err = apply_ingress(&c, "old", &[("jetbridge.dev/timeout", "later")]).unwrap_err();
    assert!(
        err.contains("jetbridge.dev/timeout: expected a duration"),
        "{err}"
    );
    apply_ingress(&c, "old", &[("jetbridge.dev/timeout", "30s")]).unwrap();
}

#[test]
fn the_chart_renders_no_policy_when_turned_off_or_not_served() {
    let kube = kube();
    assert!(
        render(&kube, "jb", &["--api-versions", VAP_API])
            .contains("kind: ValidatingAdmissionPolicy\n"),
        "on by default"
    );
    let off = render_chart(
        &kube,
        "jb",
        &[
            "--api-versions",
            VAP_API,
            "--set",
            "admissionPolicy.enabled=false",
        ],
    );
    assert!(off.contains("kind: Deployment"), "{off}");
    assert!(!off.contains("kind: ValidatingAdmission"), "{off}");
    let old_cluster = render_chart(&kube, "jb", &[]);
    assert!(old_cluster.contains("kind: Deployment"), "{old_cluster}");
    assert!(
        !old_cluster.contains("kind: ValidatingAdmission"),
        "{old_cluster}"
    );
}

/// A Policy `name` in the corner's namespace with `spec` (JSON).
fn policy(c: &Corner, name: &str, spec: &str) -> String {
    format!(
        r#"{{"apiVersion": "jetbridge.dev/v1", "kind": "Policy", "metadata": {{"name": "{name}", "namespace": "{}"}}, "spec": {spec}}}"#,
        c.ns
    )
}

/// An action nesting `depth` operators (`or` in `and` in `or` …).
fn nested(depth: usize) -> String {
    let mut v = r#"{"email": {"is": "alice@example.com"}}"#.to_string();
    for i in 0..depth {
        let op = if i % 2 == 0 { "or" } else { "and" };
        v = format!(r#"{{"{op}": [{v}]}}"#);
    }
    v
}

#[test]
fn policy_specs_that_can_never_be_valid_are_refused_at_apply() {
    let c = Corner::new(kube());
    let action = |keys: usize| {
        let ops = ["and", "or", "not", "nor", "action", "xor"];
        let body: Vec<String> = ops[..keys]
            .iter()
            .map(|k| format!(r#""{k}": []"#))
            .collect();
        format!("{{{}}}", body.join(", "))
    };
    let refused = [
        (
            r#"{"allwo": {"or": []}}"#.to_string(),
            r#"unknown field "spec.allwo""#,
        ),
        (
            r#"{"allow": "x"}"#.into(),
            "spec.allow: Invalid value: \"string\": spec.allow in body must be of type object",
        ),
        (
            r#"{"deny": [{"or": []}]}"#.into(),
            "spec.deny in body must be of type object",
        ),
        (
            r#"{"rules": "x"}"#.into(),
            "spec.rules in body must be of type array",
        ),
        (
            r#"{"rules": ["x"]}"#.into(),
            "spec.rules[0] in body must be of type object",
        ),
        (
            r#"{"rules": [{"allow": []}]}"#.into(),
            "spec.rules[0].allow in body must be of type object",
        ),
        (
            format!(r#"{{"allow": {}}}"#, action(6)),
            "spec.allow: Too many: 6: must have at most 5 items",
        ),
        (
            format!(r#"{{"rules": [{{"deny": {}}}]}}"#, action(6)),
            "spec.rules[0].deny: Too many: 6: must have at most 5 items",
        ),
        (
            r#"{"rules": [{"allow": {}, "deny": {}, "dney": {}}]}"#.into(),
            "spec.rules[0]: Too many: 3: must have at most 2 items",
        ),
    ];
    for (i, (spec, want)) in refused.iter().enumerate() {
        let (ok, out, err) = c.kube.kubectl(
            &["apply", "-f", "-"],
            Some(&policy(&c, &format!("bad-{i}"), spec)),
        );
        assert!(!ok, "{spec} was accepted: {out}");
        assert!(err.contains(want), "{spec}: {err}");
    }
    let accepted = [
        format!(r#"{{"allow": {}}}"#, action(5)),
        format!(
            r#"{{"allow": {}, "rules": [{{"deny": {}}}]}}"#,
            nested(16),
            nested(16)
        ),
        r#"{"rules": [{"allow": {"or": [{"domain": {"is": "example.com"}}]}, "deny": {}}]}"#.into(),
        "{}".into(),
        // One operator past the engine's limit is not seen by the API
        // server: the controller reports it (see below).
        format!(r#"{{"allow": {}}}"#, nested(17)),
    ];
    for (i, spec) in accepted.iter().enumerate() {
        let (ok, _, err) = c.kube.kubectl(
            &["apply", "-f", "-"],
            Some(&policy(&c, &format!("good-{i}"), spec)),
        );
        assert!(ok, "{spec}: {err}");
    }
    // A client that does not ask for strict field validation gets the
    // unknown key dropped (with a warning, when it asks for one).
    let (ok, _, err) = c.kube.kubectl(
        &["apply", "--validate=warn", "-f", "-"],
        Some(&policy(&c, "lax", r#"{"allwo": {"or": []}}"#)),
    );
    assert!(ok && err.contains(r#"unknown field "spec.allwo""#), "{err}");
    let stored = c.kube.ok(
        &[
            "get",
            "policy.jetbridge.dev",
            "lax",
            "-n",
            &c.ns,
            "-o",
            "jsonpath={.spec}",
        ],
        None,
    );
    assert!(!stored.contains("allwo"), "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nesting_past_the_engines_limit_is_admitted_and_reported_by_the_controller() {
    assert_eq!(jetbridge::policy::MAX_OPERATOR_DEPTH, 16);
    let c = Corner::new(kube());
    let _ctl = Controller::start(&c, &[]).await;
    for (name, depth) in [("at-limit", 16), ("past-limit", 17)] {
        c.kube.apply(&policy(
            &c,
            name,
            &format!(r#"{{"allow": {}}}"#, nested(depth)),
        ));
    }
    let status = |name: &str| {
        c.kube.ok(
            &["get", "policy.jetbridge.dev", name, "-n", &c.ns, "-o",
              "jsonpath={.status.conditions[0].status} {.status.conditions[0].reason} {.status.conditions[0].message}"],
            None,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while (status("past-limit").is_empty() || status("at-limit").is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let past = status("past-limit");
    assert!(past.starts_with("False InvalidPolicy"), "{past}");
    assert!(
        past.contains("operators nest deeper than 16 levels"),
        "{past}"
    );
    let at = status("at-limit");
    assert!(at.starts_with("True Compiled"), "{at}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_stored_before_the_bounds_is_still_read_reported_and_repairable() {
    let c = Corner::new(own_kube());
    let crd = format!(
        "{}/crds/policies.jetbridge.dev.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    // The CRD as it was: no bounds on actions and rules.
    let unbounded: String = jetbridge::crd::crd_yaml()
        .lines()
        .filter(|l| !l.contains("maxProperties:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(unbounded, jetbridge::crd::crd_yaml());
    c.kube.ok(&["apply", "-f", "-"], Some(&unbounded));
    let six = r#"{"allow": {"and": [], "or": [], "not": [], "nor": [], "action": [], "xor": []}}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, _, err) = c
            .kube
            .kubectl(&["apply", "-f", "-"], Some(&policy(&c, "old", six)));
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the unbounded CRD: {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.kube.ok(&["apply", "-f", &crd], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, _, _) = c.kube.kubectl(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&policy(&c, "new", six)),
        );
        if !ok {
            break;
        }
        assert!(Instant::now() < deadline, "the bounded CRD is not in force");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The controller reads the stored object and writes its status.
    let _ctl = Controller::start(&c, &[]).await;
    let status = || {
        c.kube.ok(
            &[
                "get",
                "policy.jetbridge.dev",
                "old",
                "-n",
                &c.ns,
                "-o",
                "jsonpath={.status.conditions[0].status} {.status.conditions[0].reason} \
                 {.status.conditions[0].message}",
            ],
            None,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status().starts_with("False InvalidPolicy") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = status();
    assert!(old.starts_with("False InvalidPolicy"), "{old}");
    assert!(old.contains("xor"), "{old}");

    // The API server judges the whole object on any other edit (1.37 does
    // not ratchet this bound), so a label waits for the repair; a new
    // out-of-bounds spec is refused; a repair is accepted and compiles.
    let label = || {
        c.kube.kubectl(
            &[
                "label",
                "policy.jetbridge.dev",
                "old",
                "-n",
                &c.ns,
                "team=a",
            ],
            None,
        )
    };
    let (ok, _, err) = label();
    assert!(!ok && err.contains("must have at most 5 items"), "{err}");
    let seven = six.replace(r#""xor": []"#, r#""xor": [], "xnor": []"#);
    let (ok, _, err) = c
        .kube
        .kubectl(&["apply", "-f", "-"], Some(&policy(&c, "old", &seven)));
    assert!(!ok && err.contains("must have at most 5 items"), "{err}");
    let good = r#"{"allow": {"or": [{"email": {"is": "alice@example.com"}}]}}"#;
    c.kube
        .ok(&["apply", "-f", "-"], Some(&policy(&c, "old", good)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status().starts_with("True Compiled") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let repaired = status();
    assert!(repaired.starts_with("True Compiled"), "{repaired}");
    let (ok, _, err) = label();
    assert!(ok, "{err}");
}
