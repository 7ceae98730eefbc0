"""Checks over rendered chart manifests, for tests/tools/chart-check.sh.

    chart_manifests.py validate KUBE_VERSION FILE
        Validates every object offline with kubernetes-validate (strict: unknown
        fields are errors). Kinds backed by a CRD it has no schema for are skipped
        only when listed in SKIPPED_KINDS; any other unknown kind fails.
    chart_manifests.py rbac FILE
        Fails when a Role or ClusterRole rule has `*` in apiGroups, resources,
        verbs, resourceNames or nonResourceURLs.
    chart_manifests.py expect CASE FILE
        Checks what a value set must produce (CASE: the fixture's name, or
        `default`, or `kube-1.20`).

Prints one line per finding; exits 1 when anything failed.
"""

import sys

import kubernetes_validate
import yaml

# CRD-backed kinds kubernetes-validate has no schema for: skipped on purpose.
SKIPPED_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name(obj):
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def validate(version, path):
    failures = 0
    for obj in load(path):
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in SKIPPED_KINDS:
            print(f"skipped {name(obj)}: {key[0]} {key[1]} is CRD-backed, no offline schema")
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            print(f"valid   {name(obj)} ({key[0]})")
        except kubernetes_validate.SchemaNotFoundError:
            print(f"FAIL    {name(obj)}: no schema for {key[0]} {key[1]} in Kubernetes {version}")
            failures += 1
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            print(f"FAIL    {name(obj)}: {where}: {e.message}")
            failures += 1
    return failures


def rbac(path):
    failures = 0
    roles = 0
    for obj in load(path):
        if obj.get("apiVersion") != "rbac.authorization.k8s.io/v1" or obj.get("kind") not in ("Role", "ClusterRole"):
            continue
        roles += 1
        for i, rule in enumerate(obj.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                if any("*" in v for v in rule.get(field) or []):
                    print(f"FAIL    {name(obj)} rule {i}: wildcard in {field}: {rule.get(field)}")
                    failures += 1
    if roles == 0:
        print(f"FAIL    {path}: no Role or ClusterRole rendered")
        failures += 1
    elif failures == 0:
        print(f"ok      {roles} Role/ClusterRole objects, no wildcard")
    return failures


def find(objs, kind, name=None, namespace=None):
    return [
        o for o in objs
        if o.get("kind") == kind
        and (name is None or o["metadata"].get("name") == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objs, kind, name, namespace=None):
    found = find(objs, kind, name, namespace)
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name}, found {len(found)}")
    return found[0]


def args_of(objs, deployment):
    return one(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]["args"]


def flag(args, f):
    return args[args.index(f) + 1] if f in args else None


def rule_resources(role):
    return sorted(
        f"{g or 'core'}/{r}"
        for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    )


def expect_default(objs):
    cfg = yaml.safe_load(one(objs, "ConfigMap", "jetbridge-config")["data"]["config.yaml"])
    assert "certificates" not in cfg, cfg
    d = one(objs, "Deployment", "jetbridge", "jetbridge")
    pod = d["spec"]["template"]
    c = pod["spec"]["containers"][0]
    args = c["args"]
    assert d["spec"]["replicas"] == 2, "2 replicas"
    assert args[:3] == ["controller", "--config", "/etc/jetbridge/config.yaml"], args
    for f, v in {
        "--bootstrap-secret": "jetbridge/jetbridge-bootstrap",
        "--publish-service": "jetbridge/jetbridge-proxy",
        "--address": ":8443",
        "--http-redirect-address": ":8080",
        "--internal-address": ":9090",
        "--log-format": "json",
        "--leader-election-id": "jetbridge-leader",
    }.items():
        assert flag(args, f) == v, f"{f} {flag(args, f)!r} != {v!r}"
    assert "--namespaces" not in args and "--annotation-prefix" not in args, args
    assert {p["name"]: (p["containerPort"], p["protocol"]) for p in c["ports"]} == {
        "https": (8443, "TCP"), "http": (8080, "TCP"), "internal": (9090, "TCP")}, c["ports"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "internal"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] == 65532 and sc["readOnlyRootFilesystem"], sc
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], sc
    assert sc["seccompProfile"]["type"] == "RuntimeDefault", sc
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    assert "checksum/config" in pod["metadata"]["annotations"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts == {"/etc/jetbridge": "config", "/tmp": "tmp"}, mounts
    anti = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname", anti
    proxy = one(objs, "Service", "jetbridge-proxy", "jetbridge")
    assert proxy["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"], p.get("protocol")) for p in proxy["spec"]["ports"]] == [
        (443, "https", "TCP"), (80, "http", "TCP")], proxy["spec"]["ports"]
    internal = one(objs, "Service", "jetbridge", "jetbridge")
    assert internal["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"], p.get("protocol")) for p in internal["spec"]["ports"]] == [
        (80, "internal", "TCP")], internal["spec"]["ports"]
    ic = one(objs, "IngressClass", "jetbridge")
    assert ic["spec"]["controller"] == "jetbridge.dev/ingress-controller"
    assert "ingressclass.kubernetes.io/is-default-class" not in (ic["metadata"].get("annotations") or {})
    assert one(objs, "PodDisruptionBudget", "jetbridge")["apiVersion"] == "policy/v1"
    assert one(objs, "PodDisruptionBudget", "jetbridge")["spec"]["minAvailable"] == 1
    assert not find(objs, "Secret"), "no Secret is templated by default (the bootstrap Secret is the controller's)"
    assert not find(objs, "ServiceMonitor")
    cfg = yaml.safe_load(one(objs, "ConfigMap", "jetbridge-config")["data"]["config.yaml"])
    assert cfg == {"cookie_name": "_jetbridge", "log_level": "info"}, cfg
    cluster = rule_resources(one(objs, "ClusterRole", "jetbridge"))
    assert cluster == sorted([
        "networking.k8s.io/ingressclasses", "networking.k8s.io/ingresses", "networking.k8s.io/ingresses/status",
        "jetbridge.dev/policies", "jetbridge.dev/policies/status", "core/services",
        "discovery.k8s.io/endpointslices", "core/secrets", "events.k8s.io/events"]
        + GATEWAY_CLUSTER + GATEWAY_WATCHED), cluster
    role = one(objs, "Role", "jetbridge", "jetbridge")
    names = {r["resources"][0]: r.get("resourceNames") for r in role["rules"] if r.get("resourceNames")}
    assert names == {"secrets": ["jetbridge-bootstrap"], "leases": ["jetbridge-leader"],
                     "configmaps": ["jetbridge-revocations", "jetbridge-host-claims"], "services": ["jetbridge-proxy"]}, names
    assert not find(objs, "Role", "jetbridge-watch")


# The Gateway API kinds: cluster-scoped ones always in the ClusterRole, the
# namespaced ones wherever Ingresses are watched.
GATEWAY_CLUSTER = ["gateway.networking.k8s.io/gatewayclasses",
                   "gateway.networking.k8s.io/gatewayclasses/status", "core/namespaces"]
GATEWAY_WATCHED = ["gateway.networking.k8s.io/gateways", "gateway.networking.k8s.io/gateways/status",
                   "gateway.networking.k8s.io/httproutes", "gateway.networking.k8s.io/httproutes/status",
                   "gateway.networking.k8s.io/grpcroutes", "gateway.networking.k8s.io/grpcroutes/status",
                   "gateway.networking.k8s.io/referencegrants",
                   "gateway.pomerium.io/policyfilters", "gateway.pomerium.io/policyfilters/status"]


def expect_namespaced(objs):
    args = args_of(objs, "jetbridge")
    assert flag(args, "--namespaces") == "shop,team-a", args
    assert flag(args, "--annotation-prefix") == "jetbridge.dev", args
    assert flag(args, "--log-format") == "text", args
    assert rule_resources(one(objs, "ClusterRole", "jetbridge")) == sorted(
        ["networking.k8s.io/ingressclasses"] + GATEWAY_CLUSTER)
    for ns in ("shop", "team-a"):
        role = one(objs, "Role", "jetbridge-watch", ns)
        assert "core/secrets" in rule_resources(role) and "networking.k8s.io/ingresses/status" in rule_resources(role)
        binding = one(objs, "RoleBinding", "jetbridge-watch", ns)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "jetbridge", "namespace": "jetbridge"}]
    assert one(objs, "Service", "jetbridge-proxy")["spec"]["type"] == "ClusterIP"
    sm = one(objs, "ServiceMonitor", "jetbridge")
    assert sm["spec"]["endpoints"] == [{"port": "internal", "path": "/metrics", "interval": "15s"}], sm
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert one(objs, "Secret", "jetbridge-idp")["data"]["client_secret"]
    cfg = yaml.safe_load(one(objs, "ConfigMap", "jetbridge-config")["data"]["config.yaml"])
    assert cfg["authenticate_service_url"] == "https://authenticate.example.com", cfg
    assert cfg["idp_provider"] == "oidc" and cfg["idp_provider_url"] == "https://idp.example.com", cfg
    assert cfg["idp_client_secret_file"] == "/etc/jetbridge/idp/client_secret", cfg
    assert cfg["idp_scopes"] == ["openid", "email", "profile", "groups"], cfg
    assert cfg["log_level"] == "debug" and cfg["jwt_claims_headers"]["X-Pomerium-Claim-Email"] == "email", cfg
    assert cfg["authorize_log_fields"] == ["request-id", "user", "email", "groups"], cfg
    assert "authorize_log" not in cfg, cfg
    pod = one(objs, "Deployment", "jetbridge")["spec"]["template"]
    assert "checksum/idp-secret" in pod["metadata"]["annotations"]
    sources = pod["spec"]["volumes"][0]["projected"]["sources"]
    assert sources[1]["secret"]["name"] == "jetbridge-idp", sources
    assert sources[1]["secret"]["items"] == [{"key": "client_secret", "path": "idp/client_secret", "mode": 0o440}], sources


def expect_existing_secrets(objs):
    args = args_of(objs, "edge")
    assert flag(args, "--bootstrap-secret") == "jetbridge/edge-keys", args
    assert flag(args, "--publish-service") == "jetbridge/edge-proxy", args
    assert flag(args, "--leader-election-id") == "edge-leader", args
    assert not find(objs, "Secret"), "both Secrets are the user's"
    assert not find(objs, "PodDisruptionBudget")
    role = one(objs, "Role", "edge", "jetbridge")
    names = {r["resources"][0]: r.get("resourceNames") for r in role["rules"] if r.get("resourceNames")}
    assert names == {"secrets": ["edge-keys"], "leases": ["edge-leader"],
                     "configmaps": ["edge-revocations", "edge-host-claims"], "services": ["edge-proxy"]}, names
    d = one(objs, "Deployment", "edge")
    assert d["spec"]["replicas"] == 1
    pod = d["spec"]["template"]["spec"]
    assert "nodeAffinity" in pod["affinity"] and "podAntiAffinity" not in pod["affinity"], pod["affinity"]
    assert pod["tolerations"][0]["key"] == "dedicated"
    secret = pod["volumes"][0]["projected"]["sources"][1]["secret"]
    assert secret["name"] == "edge-oidc" and secret["items"][0]["key"] == "secret", secret
    cfg = yaml.safe_load(one(objs, "ConfigMap", "edge-config")["data"]["config.yaml"])
    assert cfg["authenticate_service_url"] == "https://login.example.com", cfg
    assert cfg["idp_client_id"] == "edge" and cfg["idp_client_secret_file"] == "/etc/jetbridge/idp/client_secret"
    assert cfg["jwt_claims_headers"] == {"X-Email": "email", "X-Groups": "groups"}, cfg
    assert cfg["authorize_log"] is False and "authorize_log_fields" not in cfg, cfg
    assert one(objs, "Service", "edge")["spec"]["ports"][0]["targetPort"] == "internal"
    # the default certificate: the TLS Secret projected under tls/, named in config.yaml
    tls = pod["volumes"][0]["projected"]["sources"][2]["secret"]
    assert tls["name"] == "login-tls", tls
    assert [(i["key"], i["path"]) for i in tls["items"]] == [
        ("tls.crt", "tls/tls.crt"), ("tls.key", "tls/tls.key")], tls
    assert cfg["certificates"] == [{"cert_file": "/etc/jetbridge/tls/tls.crt",
                                    "key_file": "/etc/jetbridge/tls/tls.key"}], cfg


def expect_default_class(objs):
    ic = one(objs, "IngressClass", "jetbridge")
    assert ic["metadata"]["annotations"] == {"ingressclass.kubernetes.io/is-default-class": "true"}, ic
    proxy = one(objs, "Service", "jetbridge-proxy")["spec"]
    assert proxy["type"] == "NodePort" and proxy["externalTrafficPolicy"] == "Local", proxy


def expect_gateway_class(objs):
    gc = one(objs, "GatewayClass", "jetbridge-gateways")
    assert gc["apiVersion"] == "gateway.networking.k8s.io/v1", gc
    assert gc["spec"]["controllerName"] == "jetbridge.dev/gateway-controller", gc
    assert gc["metadata"]["labels"]["app.kubernetes.io/instance"] == "jetbridge", gc


def expect_gateway_class_unserved(objs):
    assert not find(objs, "GatewayClass"), "no GatewayClass when the Gateway API is not served"


def expect_no_gateway_class(objs):
    assert not find(objs, "GatewayClass"), "no GatewayClass unless gatewayClass.create"


def expect_kube_1_20(objs):
    assert one(objs, "PodDisruptionBudget", "jetbridge")["apiVersion"] == "policy/v1beta1"


CASES = {
    "default": expect_default,
    "namespaced": expect_namespaced,
    "existing-secrets": expect_existing_secrets,
    "default-class": expect_default_class,
    "kube-1.20": expect_kube_1_20,
    "gateway-class": expect_gateway_class,
    "gateway-class-unserved": expect_gateway_class_unserved,
    "gateway-api-served": expect_no_gateway_class,
}


def expect(case, path):
    check = CASES.get(case)
    if check is None:
        print(f"FAIL    no expectations for {case!r} (known: {', '.join(CASES)})")
        return 1
    try:
        check(load(path))
    except (AssertionError, KeyError, IndexError, TypeError, ValueError) as e:
        print(f"FAIL    {case}: {type(e).__name__}: {e}")
        return 1
    print(f"ok      {case}: rendered as expected")
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "validate":
        return validate(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "rbac":
        return rbac(argv[1])
    if len(argv) == 3 and argv[0] == "expect":
        return expect(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
