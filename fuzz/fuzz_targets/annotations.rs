//! Ingress annotations: reading them (`from_cluster`) and translating the
//! routes they make never panic, whatever the annotations say.
//!
//! The input is a list of annotations, each a line `@key` followed by the
//! lines of its value. A key without `/` gets the `ingress.pomerium.io/`
//! prefix. The Ingress serves `app.example.com` from a Service in a
//! cluster that also holds a Policy, an Opaque Secret and a TLS Secret, so
//! `policy_ref`, the `*_secret` annotations and `secure_upstream` find
//! something to read.
#![no_main]

use jetbridge::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use jetbridge::translate::{GlobalInputs, Inputs, translate};
use k8s_openapi::api::networking::v1::Ingress;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

fn object<T: serde::de::DeserializeOwned>(v: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).expect("fixture object"))
}

static CLUSTER: LazyLock<Cluster> = LazyLock::new(|| Cluster {
    ingresses: Vec::new(),
    classes: vec![object(json!({
        "metadata": {"name": "jetbridge"},
        "spec": {"controller": "jetbridge.dev/ingress-controller"}
    }))],
    policies: vec![object(json!({
        "apiVersion": "jetbridge.dev/v1", "kind": "Policy",
        "metadata": {"name": "engineers", "namespace": "apps"},
        "spec": {"allow": {"or": [{"groups": {"has": "engineering"}}]}}
    }))],
    services: vec![object(json!({
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))],
    slices: vec![object(json!({
        "metadata": {"name": "web-1", "namespace": "apps",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["10.0.0.2"], "conditions": {"ready": true}}]
    }))],
    secrets: vec![object(json!({
        "metadata": {"name": "extra", "namespace": "apps"},
        "type": "Opaque",
        "stringData": {"X-Team": "blue", "ca.crt": "not a certificate", "token": "t0ken"}
    }))],
    ..Cluster::default()
});

static GLOBAL: LazyLock<GlobalInputs> = LazyLock::new(GlobalInputs::for_test);

fn annotations(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        if let Some(key) = line.strip_prefix('@') {
            if let Some((k, v)) = current.take() {
                out.insert(k, v.join("\n"));
            }
            let key = if key.contains('/') {
                key.to_string()
            } else {
                format!("ingress.pomerium.io/{key}")
            };
            current = Some((key, Vec::new()));
        } else if let Some((_, v)) = current.as_mut() {
            v.push(line);
        }
    }
    if let Some((k, v)) = current {
        out.insert(k, v.join("\n"));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "apps", "annotations": annotations(text)},
        "spec": {
            "ingressClassName": "jetbridge",
            "tls": [{"hosts": ["app.example.com"], "secretName": "missing-tls"}],
            "rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
                {"path": "/api/.*", "pathType": "ImplementationSpecific",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}
            ]}}]
        }
    }))
    .expect("fixture Ingress");
    let mut cluster = CLUSTER.clone();
    cluster.ingresses.push(Arc::new(ingress));
    let read = from_cluster(&cluster, &ClusterSettings::default());
    assert_eq!(read.managed, ["apps/web"], "the Ingress is always ours");
    let inputs = Inputs {
        global: GLOBAL.clone(),
        routes: read.routes,
        diagnostics: read.diagnostics,
    };
    let _ = translate(&inputs);
});
