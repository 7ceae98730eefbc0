//! Traces of the real binary, read back from a real Jaeger (built from the
//! Go module proxy by `scripts/test`, receiving OTLP over HTTP/protobuf):
//! the span tree of a public, a denied and a signed-in request (sign-in at
//! the real identity provider, npm `oidc-provider`), a client's
//! `traceparent` continued and passed upstream as a child of jetbridge's
//! upstream span, an invalid one starting a new trace, no secret in any
//! attribute; tracing off and sampling 0 export nothing; an unreachable
//! receiver is a counter and a warning, never a failed request.
//!
//! Without the Jaeger binary the tests skip, unless
//! `JETBRIDGE_REQUIRE_REAL_PARTS=1`, where they fail.

use super::operations::{Standalone, listeners_and_secrets};
use crate::harness;
use harness::config::ConfigText as _;
use harness::login::*;
use http::StatusCode;
use jetbridge::identity::secrets::Bootstrap;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Jaeger binary `scripts/test` builds, or `None` when it is missing and
/// that is allowed.
fn jaeger_binary() -> Option<String> {
    let path = std::env::var("JETBRIDGE_JAEGER").unwrap_or_else(|_| {
        format!(
            "{}/.cache/jetbridge/jaeger-v1.75.0/jaeger",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("JETBRIDGE_REQUIRE_REAL_PARTS").as_deref() != Ok("1"),
        "JETBRIDGE_REQUIRE_REAL_PARTS=1 but Jaeger is missing at {path} (run ./scripts/test to build it)"
    );
    eprintln!("skipped: Jaeger is missing at {path}");
    None
}

/// A running Jaeger (all-in-one, in-memory) on ports of its own.
struct Jaeger {
    _child: ChildGuard,
    otlp: u16,
    query: u16,
}

impl Jaeger {
    async fn start(binary: &str, dir: &std::path::Path) -> Jaeger {
        let (otlp, query, grpc, health) = (free_port(), free_port(), free_port(), free_port());
        let config = format!(
            "service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"
        );
        let path = dir.join("jaeger.yaml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config=file:{}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jaeger");
        let j = Jaeger {
            _child: ChildGuard(child),
            otlp,
            query,
        };
        for _ in 0..300 {
            if let Ok(r) = Browser::new()
                .try_get(&format!("http://127.0.0.1:{query}/api/services"))
                .await
                && r.status == StatusCode::OK
            {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("jaeger did not start (config {})", path.display());
    }

    /// Every span of service `jetbridge` Jaeger holds, by span id.
    async fn spans(&self) -> HashMap<String, Span> {
        let url = format!(
            "http://127.0.0.1:{}/api/traces?service=jetbridge&limit=10000&lookback=1h",
            self.query
        );
        let r = Browser::new().get(&url).await;
        if r.status != StatusCode::OK {
            return HashMap::new(); // no span of the service yet
        }
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let mut out = HashMap::new();
        for trace in v["data"].as_array().into_iter().flatten() {
            for s in trace["spans"].as_array().into_iter().flatten() {
                let span = Span::read(s);
                out.insert(span.id.clone(), span);
            }
        }
        out
    }

    /// Waits until a span satisfies `found` (or panics after 30 s).
    async fn wait_for(&self, what: &str, found: impl Fn(&Span) -> bool) -> HashMap<String, Span> {
        for _ in 0..300 {
            let spans = self.spans().await;
            if spans.values().any(&found) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no span {what} in Jaeger: {:#?}", self.spans().await);
    }
}

/// One span as Jaeger's query API gives it.
#[derive(Clone, Debug)]
struct Span {
    trace: String,
    id: String,
    parent: Option<String>,
    name: String,
    tags: HashMap<String, String>,
}

impl Span {
    fn read(v: &Value) -> Span {
        let tags = v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let value = match &t["value"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (t["key"].as_str().unwrap().to_string(), value)
            })
            .collect();
        let parent = v["references"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["refType"] == "CHILD_OF")
            .map(|r| r["spanID"].as_str().unwrap().to_string());
        Span {
            trace: v["traceID"].as_str().unwrap().to_string(),
            id: v["spanID"].as_str().unwrap().to_string(),
            parent,
            name: v["operationName"].as_str().unwrap().to_string(),
            tags,
        }
    }

    fn tag(&self, key: &str) -> &str {
        self.tags.get(key).map(String::as_str).unwrap_or("")
    }
}

/// The server span of the request `id`, and its children by name.
fn request_tree<'a>(
    spans: &'a HashMap<String, Span>,
    id: &str,
) -> (&'a Span, HashMap<&'a str, &'a Span>) {
    let server = spans
        .values()
        .find(|s| s.tag("jetbridge.request_id") == id)
        .unwrap_or_else(|| panic!("no server span for request {id}: {spans:#?}"));
    let children = spans
        .values()
        .filter(|s| s.parent.as_deref() == Some(server.id.as_str()))
        .map(|s| (s.name.as_str(), s))
        .collect();
    (server, children)
}

/// `00-<trace>-<span>-<flags>`, split.
fn traceparent(v: &str) -> (String, String, String) {
    let p: Vec<&str> = v.split('-').collect();
    assert_eq!(p.len(), 4, "{v}");
    (p[1].into(), p[2].into(), p[3].into())
}

/// A config with tracing `keys` (YAML lines), sign-in at `issuer`, and
/// a public route, a policy route for alice and, on its `/admin`, one for
/// admins only.
fn config(head: &str, keys: &str, issuer: &str, https: u16, up: std::net::SocketAddr) -> String {
    format!(
        "{head}{keys}authenticate_service_url: https://authenticate.localhost:{https}
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: jetbridge
idp_client_secret: jetbridge-secret
routes:
  - from: https://public.localhost
    to: http://{up}
    allow_public_unauthenticated_access: true
  - from: https://app.localhost
    to: http://{up}
    policy:
      - allow: {{or: [{{email: {{is: alice@example.com}}}}]}}
  - from: https://app.localhost
    prefix: /admin
    to: http://{up}
    policy:
      - allow: {{and: [{{groups: {{has: admins}}}}]}}
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn request_spans_reach_jaeger_as_one_tree_continuing_the_client_trace_without_secrets() {
    let Some(binary) = jaeger_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jaeger = Jaeger::start(&binary, dir.path()).await;
    let (https, internal) = (free_port(), free_port());
    let callback = format!("https://authenticate.localhost:{https}/oauth2/callback");
    let (issuer, _idp) = start_idp("jetbridge", "jetbridge-secret", &[callback], &[]);
    let (up, seen) = echo_upstream().await;
    let head = listeners_and_secrets(https, internal, &Bootstrap::generate()).text();
    let keys = format!(
        "tracing_provider: otlp\ntracing_otlp_endpoint: http://127.0.0.1:{}\ntracing_sample_rate: 1\n",
        jaeger.otlp
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&head, &keys, &issuer, https, up)).unwrap();
    let s = Standalone::start(&path, https, internal, &[]).await;
    let url = |host: &str, path: &str| format!("https://{host}.localhost:{https}{path}");

    // 1. A public request continuing the client's trace (sampled), with a
    //    tracestate and a secret in the query.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let mut b = Browser::new();
    b.accept = "application/json".into();
    let r = b
        .request_with(
            "GET",
            &url("public", "/p?token=QUERYSECRET"),
            &[
                (
                    "traceparent",
                    &format!("00-{client_trace}-{client_span}-01"),
                ),
                ("tracestate", "vendor=opaque"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let public_id = r.headers["x-request-id"].to_str().unwrap().to_string();
    let sent_up = seen.lock().unwrap().last().unwrap().clone();
    let (up_trace, up_parent, up_flags) = traceparent(sent_up["traceparent"].to_str().unwrap());
    assert_eq!(
        up_trace, client_trace,
        "the upstream continues the client's trace"
    );
    assert_ne!(
        up_parent, client_span,
        "the upstream's parent is jetbridge's span"
    );
    assert_eq!(up_flags, "01");
    assert_eq!(sent_up["tracestate"], "vendor=opaque");

    // 2. An invalid traceparent starts a new trace.
    let bad_trace = "0af7651916cd43dd8448eb211c80319c";
    let r = b
        .request_with(
            "GET",
            &url("public", "/bad"),
            &[(
                "traceparent",
                &format!("00-{bad_trace}-zzzzzzzzzzzzzzzz-01"),
            )],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let invalid_id = r.headers["x-request-id"].to_str().unwrap().to_string();
    let invalid_up = seen.lock().unwrap().last().unwrap().clone();
    let (new_trace, _, _) = traceparent(invalid_up["traceparent"].to_str().unwrap());
    assert_ne!(new_trace, bad_trace);

    // 3. Signing in at the identity provider, then allowed on app, denied on admin.
    let mut alice = Browser::new();
    let r = alice.get(&url("app", "/a?token=QUERYSECRET")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let r = alice.get(&r.location().unwrap()).await;
    let authorize = r.location().unwrap();
    let callback = idp_login(&mut alice, &authorize, "alice").await;
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .unwrap();
    let r = alice.get(&callback).await;
    let callback_id = r.headers["x-request-id"].to_str().unwrap().to_string();
    let (_, r) = follow(&mut alice, r.location().unwrap(), "never", 5).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cookie = alice.jar["app.localhost"]["_jetbridge"].clone();
    let r = alice.get(&url("app", "/again")).await;
    assert_eq!(r.status, StatusCode::OK);
    let allowed_id = r.headers["x-request-id"].to_str().unwrap().to_string();
    alice.accept = "application/json".into();
    let r = alice.get(&url("app", "/admin/x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let denied_id = r.headers["x-request-id"].to_str().unwrap().to_string();

    let spans = jaeger
        .wait_for("of the denied request", |s| {
            s.tag("jetbridge.request_id") == denied_id
        })
        .await;

    // The public request: server span in the client's trace, a child of the
    // client's span; its upstream span is the upstream's parent.
    let (server, children) = request_tree(&spans, &public_id);
    assert_eq!(server.trace, client_trace);
    assert_eq!(server.parent.as_deref(), Some(client_span));
    assert_eq!(server.name, "GET routes[0]");
    assert_eq!(server.tag("span.kind"), "server");
    assert_eq!(server.tag("http.request.method"), "GET");
    assert_eq!(server.tag("http.response.status_code"), "200");
    assert_eq!(server.tag("server.address"), "public.localhost");
    assert_eq!(server.tag("jetbridge.route"), "routes[0]");
    let upstream = children["jetbridge.upstream"];
    assert_eq!(
        upstream.id, up_parent,
        "the upstream saw jetbridge's upstream span"
    );
    assert_eq!(upstream.tag("span.kind"), "client");
    assert_eq!(upstream.tag("server.address"), up.to_string());
    assert_eq!(upstream.tag("http.response.status_code"), "200");
    assert!(
        !children.contains_key("jetbridge.authorize"),
        "a public route decides nothing"
    );

    // The invalid traceparent: a root span of a new trace.
    let (server, _) = request_tree(&spans, &invalid_id);
    assert_eq!(server.trace, new_trace);
    assert_eq!(server.parent, None);

    // The callback: the sign-in step with the token exchange at the IdP.
    let (server, children) = request_tree(&spans, &callback_id);
    assert_eq!(server.tag("jetbridge.route"), "authenticate");
    let step = children["jetbridge.sign_in.callback"];
    let exchange = spans
        .values()
        .find(|s| s.parent.as_deref() == Some(step.id.as_str()) && s.name == "idp.token_exchange")
        .unwrap_or_else(|| panic!("no token exchange under the callback: {spans:#?}"));
    assert_eq!(exchange.tag("span.kind"), "client");
    assert_eq!(exchange.tag("http.response.status_code"), "200");
    assert_eq!(exchange.tag("http.request.method"), "POST");
    // The provider's discovery (run by the health check ahead of the first
    // sign-in, or by the first sign-in): its document and keys as children.
    let discover = spans
        .values()
        .find(|s| s.name == "jetbridge.idp.discover")
        .unwrap_or_else(|| panic!("no discovery span: {spans:#?}"));
    let calls: Vec<&str> = spans
        .values()
        .filter(|s| s.parent.as_deref() == Some(discover.id.as_str()))
        .filter(|s| s.tag("http.response.status_code") == "200")
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        calls.contains(&"idp.discovery") && calls.contains(&"idp.jwks"),
        "{calls:?}"
    );

    // Allowed and denied: the decision span names the rule and the outcome.
    let (server, children) = request_tree(&spans, &allowed_id);
    let d = children["jetbridge.authorize"];
    assert_eq!(d.tag("jetbridge.decision"), "allow");
    assert_eq!(d.tag("jetbridge.rule"), "policy rule 1");
    assert_eq!(d.tag("jetbridge.policy"), "-");
    assert_eq!(d.tag("jetbridge.reason"), "rule 1 allow matched");
    assert!(children.contains_key("jetbridge.upstream"));
    assert_eq!(server.name, "GET routes[1]");
    let (server, children) = request_tree(&spans, &denied_id);
    assert_eq!(server.tag("http.response.status_code"), "403");
    assert_eq!(
        children["jetbridge.authorize"].tag("jetbridge.decision"),
        "deny"
    );
    assert!(
        !children.contains_key("jetbridge.upstream"),
        "a denied request is not sent"
    );

    // No secret in any attribute of any span.
    let jar: Vec<String> = alice
        .jar
        .values()
        .flat_map(|c| c.values().cloned())
        .filter(|v| v.len() >= 16)
        .collect();
    for span in spans.values() {
        for (k, v) in &span.tags {
            for secret in ["QUERYSECRET", "token=", "code=", "Bearer", &code, &cookie]
                .into_iter()
                .chain(jar.iter().map(String::as_str))
            {
                assert!(!v.contains(secret), "{}: {k}={v} holds a secret", span.name);
            }
            assert!(!k.contains("cookie") && !k.contains("authorization"), "{k}");
        }
    }
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn tracing_off_or_sampled_at_zero_exports_nothing_and_a_lost_receiver_fails_no_request() {
    let Some(binary) = jaeger_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jaeger = Jaeger::start(&binary, dir.path()).await;
    let (up, seen) = echo_upstream().await;
    let start = |name: &str, keys: String| {
        let (https, internal) = (free_port(), free_port());
        let head = listeners_and_secrets(https, internal, &Bootstrap::generate()).text();
        let text = format!(
            "{head}{keys}routes:\n  - from: https://public.localhost\n    to: http://{up}\n    allow_public_unauthenticated_access: true\n"
        );
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        async move { Standalone::start(&path, https, internal, &[]).await }
    };
    let endpoint = format!("tracing_otlp_endpoint: http://127.0.0.1:{}\n", jaeger.otlp);
    let off = start("off", endpoint.clone()).await;
    let zero = start(
        "zero",
        format!("tracing_provider: otlp\ntracing_sample_rate: 0\n{endpoint}"),
    )
    .await;
    let dead = free_port();
    let lost = start(
        "lost",
        format!(
            "otel_traces_exporter: otlp\notel_exporter_otlp_endpoint: http://127.0.0.1:{dead}\n"
        ),
    )
    .await;
    let get = |port: u16, headers: Vec<(&'static str, String)>| async move {
        let mut b = Browser::new();
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = b
            .request_with("GET", &format!("https://public.localhost:{port}/"), &h)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.headers["x-request-id"].to_str().unwrap().to_string()
    };
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string();

    // Off: no span, and the client's traceparent reaches the upstream as sent.
    let mut quiet = vec![get(off.https, vec![]).await];
    quiet.push(get(off.https, vec![("traceparent", parent.clone())]).await);
    assert_eq!(
        seen.lock().unwrap().last().unwrap()["traceparent"],
        parent.as_str()
    );
    // Sampling 0: new traces are not sampled (the upstream is told so)...
    for _ in 0..5 {
        quiet.push(get(zero.https, vec![]).await);
        let (_, _, flags) = traceparent(
            seen.lock().unwrap().last().unwrap()["traceparent"]
                .to_str()
                .unwrap(),
        );
        assert_eq!(flags, "00");
    }
    // ...but a client's sampled trace is (the sampler is parent-based).
    let continued = get(zero.https, vec![("traceparent", parent.clone())]).await;
    let spans = jaeger
        .wait_for("of the continued trace", |s| {
            s.tag("jetbridge.request_id") == continued
        })
        .await;
    // The batch interval is the same for every process: by the time the
    // continued trace arrived, any span of the earlier requests would have.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let spans = {
        let later = jaeger.spans().await;
        assert!(later.len() >= spans.len());
        later
    };
    for id in &quiet {
        assert!(
            !spans.values().any(|s| s.tag("jetbridge.request_id") == id),
            "request {id} was exported: {spans:#?}"
        );
    }
    assert!(
        spans
            .values()
            .all(|s| s.trace == "4bf92f3577b34da6a3ce929d0e0e4736")
    );

    // An unreachable receiver: requests still answer, the failure is counted
    // and logged.
    for _ in 0..3 {
        get(lost.https, vec![]).await;
    }
    lost.wait_metric("jetbridge_trace_export_failures_total", 1.0)
        .await;
    assert!(
        lost.log()
            .iter()
            .any(|l| l.contains("exporting spans to the OTLP receiver failed")),
        "{:#?}",
        lost.log()
    );
    get(lost.https, vec![]).await;
}
