//! The cluster part of the harness: a real kube-apiserver and etcd
//! (`scripts/cluster`; the run's shared one from `JETBRIDGE_CLUSTER_DIR`, or
//! one of a test's own), a namespace and IngressClass per test, kubectl, and
//! the real `jetbridge controller` binary as a child process.

use super::login::*;
use http::StatusCode;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn random_name(prefix: &str) -> String {
    let mut b = [0u8; 4];
    jetbridge::identity::random_bytes(&mut b);
    format!("{prefix}-{}", hex::encode(b))
}

/// A running API server: the shared one, or one of this test's own.
pub struct Kube {
    pub env: HashMap<String, String>,
    pub dir: String,
    pub own: Option<tempfile::TempDir>,
}

pub fn script() -> String {
    format!("{}/scripts/cluster", env!("CARGO_MANIFEST_DIR"))
}

impl Kube {
    pub fn read_env(dir: &str) -> HashMap<String, String> {
        std::fs::read_to_string(format!("{dir}/env"))
            .unwrap_or_else(|e| panic!("{dir}/env: {e}"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect()
    }

    /// The cluster of this test run, or a new one for this test.
    pub fn get() -> Kube {
        if let Ok(dir) = std::env::var("JETBRIDGE_CLUSTER_DIR") {
            return Kube {
                env: Self::read_env(&dir),
                dir,
                own: None,
            };
        }
        Self::own()
    }

    /// A cluster of this test's own (for faults that would disturb others),
    /// of the run's Kubernetes version.
    pub fn own() -> Kube {
        Self::own_version(None)
    }

    /// A cluster of this test's own of Kubernetes `version` (one that
    /// `scripts/cluster` knows), or of the run's when `None`.
    pub fn own_version(version: Option<&str>) -> Kube {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_string_lossy().into_owned();
        let mut start = Command::new(script());
        start.args(["start", &dir]);
        if let Some(v) = version {
            start.env("JETBRIDGE_KUBE_VERSION", v);
        }
        let out = start.output().unwrap();
        assert!(
            out.status.success(),
            "scripts/cluster start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Kube {
            env: Self::read_env(&dir),
            dir,
            own: Some(tmp),
        }
    }

    /// The host's address in the cluster network (`HOST_IP`): the API server
    /// listens there, pods reach it, and the host routes pod and Service
    /// addresses through it.
    pub fn host_ip(&self) -> IpAddr {
        let ip = self.env.get("HOST_IP").unwrap_or_else(|| {
            panic!(
                "{}/env has no HOST_IP: a cluster without a node network",
                self.dir
            )
        });
        ip.parse().unwrap()
    }

    pub fn kubeconfig(&self) -> &str {
        &self.env["KUBECONFIG"]
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        run_command(
            Command::new(&self.env["KUBECTL"])
                .args(args)
                .env("KUBECONFIG", self.kubeconfig())
                .env(
                    "KUBECACHEDIR",
                    self.env.get("KUBECACHEDIR").cloned().unwrap_or_default(),
                ),
            stdin,
        )
    }

    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.kubectl(args, stdin);
        assert!(ok, "kubectl {args:?}: {err}{out}");
        out
    }

    /// Server-side apply (the EndpointSlice stand-in is a custom resource,
    /// which takes no strategic-merge patches).
    pub fn apply(&self, yaml: &str) {
        self.ok(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=tests",
                "-f",
                "-",
            ],
            Some(yaml),
        );
    }

    pub fn restart_apiserver(&self) {
        let out = Command::new(script())
            .args(["restart-apiserver", &self.dir])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop_apiserver(&self) {
        let pid = std::fs::read_to_string(format!("{}/apiserver.pid", self.dir)).unwrap();
        Command::new("kill").arg(pid.trim()).status().unwrap();
    }

    /// Moves etcd's revision on (writes under a key the API server never
    /// reads) and compacts away the history before it, through etcd's own
    /// HTTP gateway: every watch resumed from an older resource version
    /// then gets 410 Gone.
    pub fn compact_etcd(&self) {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let post = |path: &str, body: String| -> serde_json::Value {
            let out = Command::new("curl")
                .args(["-fsS", "-X", "POST", "--data-binary", &body])
                .arg(format!("{}{path}", self.env["ETCD_URL"]))
                .output()
                .unwrap();
            assert!(out.status.success(), "etcd {path}: {out:?}");
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let mut revision = String::new();
        for i in 0..5 {
            let put = serde_json::json!({"key": b64("/jetbridge-tests/bump"), "value": b64(&i.to_string())});
            let r = post("/v3/kv/put", put.to_string());
            revision = r["header"]["revision"].as_str().unwrap().to_string();
        }
        let compact = serde_json::json!({"revision": revision, "physical": true});
        post("/v3/kv/compaction", compact.to_string());
    }
}

impl Drop for Kube {
    fn drop(&mut self) {
        if self.own.is_some() {
            let _ = Command::new(script()).args(["stop", &self.dir]).output();
        }
    }
}

/// One test's corner of the cluster: a namespace, an IngressClass of its
/// own and the CRD.
pub struct Corner {
    pub kube: Kube,
    pub ns: String,
    pub class: String,
    pub controller_name: String,
}

impl Corner {
    pub fn new(kube: Kube) -> Corner {
        let ns = random_name("t");
        let class = random_name("jb");
        let controller_name = format!("jetbridge.dev/{class}");
        let applied = kube.ok(
            &[
                "apply",
                "-f",
                &format!(
                    "{}/crds/policies.jetbridge.dev.yaml",
                    env!("CARGO_MANIFEST_DIR")
                ),
            ],
            None,
        );
        kube.ok(
            &[
                "wait",
                "--for=condition=Established",
                "crd/policies.jetbridge.dev",
                "--timeout=60s",
            ],
            None,
        );
        if !applied.contains("unchanged") {
            // A kubectl discovery cache filled before the kind was served
            // would refuse the next `apply` ("no matches for kind Policy");
            // listing the group's resources reads discovery afresh.
            kube.ok(&["api-resources", "--api-group=jetbridge.dev"], None);
        }
        kube.ok(&["create", "namespace", &ns], None);
        kube.apply(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: {class}}}\nspec: {{controller: {controller_name}}}\n"
        ));
        Corner {
            kube,
            ns,
            class,
            controller_name,
        }
    }

    /// A Service `name` on port 80 for servers of this test process on
    /// loopback (`ups`): a Service without a selector and EndpointSlices
    /// written here, as for something outside the cluster. An EndpointSlice
    /// may not hold a loopback address, so each server is reached through a
    /// TCP relay on the host's address in the cluster network.
    pub fn service(&self, name: &str, ups: &[SocketAddr]) {
        let ns = &self.ns;
        self.kube.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]\n"
        ));
        self.slice(name, ups);
    }

    /// (Re)writes the EndpointSlices of Service `svc` (one per server, each
    /// told apart by its relay's port) to point at `ups`.
    pub fn slice(&self, svc: &str, ups: &[SocketAddr]) {
        let ns = &self.ns;
        let (_, existing, _) = self.kube.kubectl(
            &[
                "get",
                "endpointslices.discovery.k8s.io",
                "-n",
                ns,
                "-l",
                &format!("kubernetes.io/service-name={svc}"),
                "-o",
                "name",
            ],
            None,
        );
        let mut docs = String::new();
        for (i, up) in ups.iter().enumerate() {
            let at = relay(self.kube.host_ip(), *up);
            docs.push_str(&format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-{i}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: [{{name: http, port: {}, protocol: TCP}}]\nendpoints:\n  - addresses: [\"{}\"]\n    conditions: {{ready: true}}\n",
                at.port(),
                at.ip()
            ));
        }
        self.kube.apply(&docs);
        for old in existing.lines() {
            let idx: usize = old
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if idx >= ups.len() {
                self.kube.ok(&["delete", "-n", ns, old], None);
            }
        }
    }

    /// A Deployment `name` of `replicas` echo pods (image
    /// `jetbridge.test/echo`, run by the cluster's pod runner), each
    /// answering `answer`, or its own pod name when `None`; ready when its
    /// `/healthz` answers (probed every second). A pod being deleted keeps
    /// serving for 2 s (a preStop sleep), while its endpoint leaves the
    /// slices, as a production Deployment does.
    pub fn echo_pods(&self, name: &str, answer: Option<&str>, replicas: usize) {
        let ns = &self.ns;
        let env = answer
            .map(|a| format!("          env: [{{name: ECHO_NAME, value: {a:?}}}]\n"))
            .unwrap_or_default();
        self.kube.apply(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 10\n      containers:\n        - name: echo\n          image: jetbridge.test/echo:1\n{env}          ports: [{{name: http, containerPort: 8080}}]\n          readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}\n          lifecycle: {{preStop: {{exec: {{command: [sleep, \"2\"]}}}}}}\n"
        ));
    }

    /// A Service `svc` on port 80 selecting the pods of Deployment `deploy`
    /// (their port `http`); applied again, it moves the Service's traffic.
    /// The EndpointSlices are the EndpointSlice controller's.
    pub fn select(&self, svc: &str, deploy: &str) {
        let ns = &self.ns;
        self.kube.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: {ns}}}\nspec:\n  selector: {{app: {deploy}}}\n  ports: [{{name: http, port: 80, targetPort: http, protocol: TCP}}]\n"
        ));
    }

    /// The ready endpoint addresses of Service `svc`, from all its
    /// EndpointSlices.
    pub fn ready_endpoints(&self, svc: &str) -> Vec<String> {
        let out = self.kube.ok(
            &[
                "get",
                "endpointslices.discovery.k8s.io",
                "-n",
                &self.ns,
                "-l",
                &format!("kubernetes.io/service-name={svc}"),
                "-o",
                "json",
            ],
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut ips = Vec::new();
        for slice in v["items"].as_array().into_iter().flatten() {
            for e in slice["endpoints"].as_array().into_iter().flatten() {
                if e["conditions"]["ready"] == serde_json::Value::Bool(true) {
                    ips.extend(e["addresses"][0].as_str().map(String::from));
                }
            }
        }
        ips
    }

    /// Waits (up to `secs`) until Service `svc` has `n` ready endpoints; returns them.
    pub async fn wait_ready_endpoints(&self, svc: &str, n: usize, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let ips = self.ready_endpoints(svc);
            if ips.len() == n {
                return ips;
            }
            assert!(
                Instant::now() < deadline,
                "Service {svc}: {} ready endpoints, not {n}: {ips:?}\npods: {}",
                ips.len(),
                self.kube
                    .kubectl(&["get", "pods", "-n", &self.ns, "-o", "wide"], None)
                    .1
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn ingress(&self, name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) {
        let ns = &self.ns;
        let class = &self.class;
        let mut ann = String::new();
        for (k, v) in annotations {
            ann.push_str(&format!("    {k}: {}\n", serde_json::to_string(v).unwrap()));
        }
        let ann = if ann.is_empty() {
            String::new()
        } else {
            format!("  annotations:\n{ann}")
        };
        self.kube.apply(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n{ann}spec:\n  ingressClassName: {class}\n  rules:\n    - host: {host}\n      http:\n        paths:\n          - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
        ));
    }
}

impl Corner {
    /// A fresh corner of the shared cluster whose Service `service` selects
    /// an echo pod answering `upstream`, ready.
    pub async fn with_upstream(service: &str, upstream: &'static str) -> Corner {
        let c = Corner::new(Kube::get());
        c.echo_pods(service, Some(upstream), 1);
        c.select(service, service);
        c.wait_ready_endpoints(service, 1, 60).await;
        c
    }

    /// Another namespace beside this one, served by the same IngressClass
    /// (another tenant of the same controller).
    pub fn beside(&self) -> Corner {
        let ns = random_name("t");
        self.kube.ok(&["create", "namespace", &ns], None);
        Corner {
            kube: Kube::get(),
            ns,
            class: self.class.clone(),
            controller_name: self.controller_name.clone(),
        }
    }

    /// A public Ingress `name` on `host` to Service `svc` (port 80).
    pub fn public_ingress(&self, name: &str, host: &str, svc: &str) {
        self.ingress(
            name,
            host,
            svc,
            &[("jetbridge.dev/allow_public_unauthenticated_access", "true")],
        );
    }

    /// A public Ingress `name` on `host` `path` to Service `svc`, with a TLS
    /// Secret for the host.
    pub fn public_tls_ingress(&self, name: &str, host: &str, path: &str, svc: &str, secret: &str) {
        let (ns, class) = (&self.ns, &self.class);
        self.kube.apply(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  ingressClassName: {class}\n  tls: [{{hosts: [{host}], secretName: {secret}}}]\n  rules:\n    - host: {host}\n      http: {{paths: [{{path: {path}, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}]}}\n"
        ));
    }
}

impl Drop for Corner {
    fn drop(&mut self) {
        let _ = self.kube.kubectl(
            &["delete", "ingressclass", &self.class, "--wait=false"],
            None,
        );
        let _ = self
            .kube
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"], None);
    }
}

/// A `jetbridge controller` process.
pub struct Controller {
    pub _child: ChildGuard,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub https: u16,
    /// The plain-HTTP listener (Gateway `HTTP` listeners; the redirect).
    pub http: u16,
    pub internal: u16,
}

impl Controller {
    pub async fn start(c: &Corner, extra: &[&str]) -> Controller {
        Self::start_with(&c.kube, &c.ns, &c.controller_name, extra, &[]).await
    }

    pub async fn start_with(
        kube: &Kube,
        ns: &str,
        controller_name: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Controller {
        let (https, http, internal) = (free_port(), free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args([
                "--log-format",
                "json",
                "controller",
                "--kubeconfig",
                kube.kubeconfig(),
            ])
            .args(["--namespaces", ns, "--controller-name", controller_name])
            .args(["--bootstrap-secret", &format!("{ns}/jetbridge-bootstrap")])
            .args(["--address", &format!("127.0.0.1:{https}")])
            .args(["--http-redirect-address", &format!("127.0.0.1:{http}")])
            .args(["--internal-address", &format!("127.0.0.1:{internal}")])
            .args(extra)
            .envs(envs.iter().copied())
            .env_remove("JETBRIDGE_LOG")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = capture_lines(&mut child);
        let c = Controller {
            _child: ChildGuard(child),
            lines,
            https,
            http,
            internal,
        };
        let ready = format!("http://127.0.0.1:{internal}/readyz");
        let mut b = Browser::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", internal))
                .await
                .is_ok()
                && b.get(&ready).await.status == StatusCode::OK
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("controller not ready: {:#?}", c.log());
    }

    /// Waits up to 20 s for a log line satisfying `want` (panics with the log).
    pub async fn wait_for_log(&self, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().iter().any(|l| want(l)) {
            assert!(Instant::now() < deadline, "{:#?}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Stops the process as Kubernetes does (SIGTERM) and waits for it to exit.
    pub fn terminate(mut self) -> Vec<String> {
        let pid = self._child.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self._child.0.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "no exit on SIGTERM: {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.log()
    }

    /// No log field shows an optional value in Rust's debug form (`Some(…)`, `None`).
    pub fn assert_no_debug_options(&self) {
        let bad: Vec<String> = self
            .log()
            .into_iter()
            .filter(|l| l.contains("\"Some(") || l.contains(":\"None\""))
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https)
    }

    /// The URL of `host` + `path` on the plain-HTTP listener.
    pub fn plain_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http)
    }

    /// Polls `https://host/` through this proxy until `want` holds.
    pub async fn expect(
        &self,
        b: &mut Browser,
        host: &str,
        what: &str,
        want: impl Fn(&Reply) -> bool,
    ) -> Reply {
        eventually(b, &self.url(host, "/"), what, want, self).await
    }

    /// As [`Controller::expect`], waiting for `host` to answer `status`.
    pub async fn expect_status(
        &self,
        b: &mut Browser,
        host: &str,
        what: &str,
        status: StatusCode,
    ) -> Reply {
        self.expect(b, host, what, |r| r.status == status).await
    }

    pub async fn jwks(&self) -> String {
        Browser::new()
            .get(&format!(
                "http://127.0.0.1:{}/.well-known/pomerium/jwks.json",
                self.internal
            ))
            .await
            .body
    }
}

/// Relays TCP connections made to a new port on `ip` to `to`; returns the
/// relay's address. Lives as long as the test's runtime.
pub fn relay(ip: IpAddr, to: SocketAddr) -> SocketAddr {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.set_nonblocking(true).unwrap();
    let at = l.local_addr().unwrap();
    let l = tokio::net::TcpListener::from_std(l).unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    at
}

/// A loopback upstream answering its own name.
pub async fn named_upstream(name: &'static str) -> std::net::SocketAddr {
    use http_body_util::Full;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        bytes::Bytes::from(name),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// Polls `url` until the reply satisfies `want` (or panics after 30 s). A
/// request that gets no reply (the proxy not listening there yet, as when
/// a port is bound only once a new snapshot names it) is a "not yet".
pub async fn eventually(
    b: &mut Browser,
    url: &str,
    what: &str,
    want: impl Fn(&Reply) -> bool,
    log: &Controller,
) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match b.try_get(url).await {
            Ok(r) if want(&r) => return r,
            Ok(r) => format!("{} {}", r.status, r.body),
            Err(e) => format!("no reply: {e}"),
        };
        if Instant::now() > deadline {
            panic!("{url}: never {what}; last {last}\nlog: {:#?}", log.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn api_client() -> Browser {
    let mut b = Browser::new();
    b.accept = "application/json".into();
    b
}

/// A self-signed certificate for `names` as (cert PEM, key PEM, leaf DER).
pub fn certificate(names: &[&str]) -> (String, String, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    (
        ck.cert.pem(),
        ck.signing_key.serialize_pem(),
        ck.cert.der().to_vec(),
    )
}

impl Corner {
    /// A `kubernetes.io/tls` Secret `name` in the corner's namespace holding `cert`.
    pub fn tls_secret(&self, name: &str, cert: &(String, String, Vec<u8>)) {
        let c = self;
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&crt, &cert.0).unwrap();
        std::fs::write(&key, &cert.1).unwrap();
        let yaml = c.kube.ok(
            &[
                "create",
                "secret",
                "tls",
                name,
                "-n",
                &c.ns,
                "--cert",
                crt.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--dry-run=client",
                "-o",
                "yaml",
            ],
            None,
        );
        c.kube.apply(&yaml);
    }
}
