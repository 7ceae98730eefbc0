//! Cluster tier with pods that run: Services whose endpoints are echo pods
//! started by the cluster's pod runner, the EndpointSlices written by the
//! real EndpointSlice controller (readiness, terminating endpoints, slices
//! split at 100 endpoints), and `jetbridge controller` routing to them.

use crate::harness;
use harness::cluster::*;
use harness::login::*;
use http::StatusCode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A corner with Deployment `web` of `replicas` echo pods each answering its
/// pod name, a Service `web` selecting them, all ready, a public Ingress on
/// `web.test` and a controller serving it.
async fn web_corner(replicas: usize, wait_secs: u64) -> (Corner, Controller) {
    let c = Corner::new(Kube::get());
    c.echo_pods("web", None, replicas);
    c.select("web", "web");
    c.wait_ready_endpoints("web", replicas, wait_secs).await;
    c.public_ingress("web", "web.test", "web");
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    ctl.expect_status(&mut b, "web.test", "serves", StatusCode::OK)
        .await;
    (c, ctl)
}

/// The names of the pods that answered `n` requests through the proxy.
async fn answering_pods(ctl: &Controller, n: usize) -> BTreeMap<String, usize> {
    let mut b = api_client();
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = b.get(&ctl.url("web.test", "/")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        *seen.entry(r.body).or_insert(0) += 1;
    }
    seen
}

/// The pod names of Deployment `app` in the corner, by pod IP.
fn pods_by_ip(c: &Corner, app: &str) -> BTreeMap<String, String> {
    let out = c.kube.ok(
        &[
            "get",
            "pods",
            "-n",
            &c.ns,
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[*]}{.status.podIP}={.metadata.name}{\"\\n\"}{end}",
        ],
        None,
    );
    out.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(ip, _)| !ip.is_empty())
        .map(|(ip, name)| (ip.to_string(), name.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_with_more_than_100_endpoints_is_served_by_every_pod() {
    const PODS: usize = 110;
    let (c, ctl) = web_corner(PODS, 300).await;
    let slices = c.kube.ok(
        &[
            "get",
            "endpointslices.discovery.k8s.io",
            "-n",
            &c.ns,
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ],
        None,
    );
    assert!(
        slices.lines().count() >= 2,
        "{PODS} endpoints in one slice: {slices}"
    );
    let pods: BTreeSet<String> = pods_by_ip(&c, "web").into_values().collect();
    assert_eq!(pods.len(), PODS);
    let mut b = api_client();
    let mut seen = BTreeSet::new();
    for _ in 0..20 * PODS {
        let r = b.get(&ctl.url("web.test", "/")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.insert(r.body);
        if seen.len() == PODS {
            break;
        }
    }
    assert_eq!(
        seen,
        pods,
        "pods never answering: {:?}",
        pods.difference(&seen).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_failing_its_readiness_probe_leaves_rotation_and_comes_back() {
    let (c, ctl) = web_corner(3, 90).await;
    let (ip, sick) = pods_by_ip(&c, "web").into_iter().next().unwrap();
    let ready = |value: &str| {
        let (ok, out, err) = run_command(
            std::process::Command::new("curl").args([
                "-fsS",
                "-X",
                "POST",
                &format!("http://{ip}:8080/_echo/ready?value={value}"),
            ]),
            None,
        );
        assert!(ok, "{out}{err}");
    };

    ready("false");
    c.wait_ready_endpoints("web", 2, 30).await;
    // Once the slice says so, the proxy sends it nothing: wait for the
    // controller to publish the change (a window of 30 answers without it),
    // then check it stays out.
    let deadline = Instant::now() + Duration::from_secs(20);
    while answering_pods(&ctl, 30).await.contains_key(&sick) {
        assert!(Instant::now() < deadline, "{sick} still answers");
    }
    let seen = answering_pods(&ctl, 60).await;
    assert!(!seen.contains_key(&sick), "{sick} answered: {seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");

    ready("true");
    c.wait_ready_endpoints("web", 3, 30).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answering_pods(&ctl, 30).await.contains_key(&sick) {
        assert!(Instant::now() < deadline, "{sick} never came back");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_the_backend_loses_no_request() {
    let (c, ctl) = web_corner(3, 90).await;
    let before: BTreeSet<String> = pods_by_ip(&c, "web").into_values().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, outcomes, url) = (stop.clone(), outcomes.clone(), ctl.url("web.test", "/"));
        load.push(tokio::spawn(async move {
            let mut b = api_client();
            while !stop.load(Ordering::Relaxed) {
                let status = b.get(&url).await.status.as_u16();
                *outcomes.lock().unwrap().entry(status).or_insert(0) += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    c.kube
        .ok(&["rollout", "restart", "deployment/web", "-n", &c.ns], None);
    c.kube.ok(
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            &c.ns,
            "--timeout=180s",
        ],
        None,
    );
    // The old pods' endpoints are gone from the slices, not only replaced.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now: BTreeSet<String> = pods_by_ip(&c, "web").into_values().collect();
        if now.len() == 3 && now.is_disjoint(&before) {
            break;
        }
        assert!(Instant::now() < deadline, "old pods left: {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.wait_ready_endpoints("web", 3, 30).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let total: usize = outcomes.values().sum();
    eprintln!(
        "rollout restart of 3 pods in {:?}: {total} requests, by status {outcomes:?}",
        started.elapsed()
    );
    assert!(total > 100, "{outcomes:?}");
    assert_eq!(
        outcomes.keys().copied().collect::<Vec<_>>(),
        [200],
        "{outcomes:?}"
    );
    let seen = answering_pods(&ctl, 30).await;
    assert!(
        seen.keys().all(|p| !before.contains(p)),
        "an old pod answers: {seen:?}"
    );
}
