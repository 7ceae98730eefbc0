#!/usr/bin/env python3
"""The pod runner: a stand-in for the kubelet and a container runtime, for the test cluster.

    pod_runner.py --cluster-dir DIR

Started by `scripts/cluster start DIR` (1.37 tier); reads DIR/env (APISERVER_URL,
ADMIN_TOKEN, CA_FILE, CLUSTER_INDEX, NODE_NETNS, NODE_IP, ...). Everything else in the
cluster is the real thing (kube-apiserver, controller-manager, scheduler, kube-proxy);
this program is the only stand-in. It plays the kubelet of two Nodes, `jbN-a` and
`jbN-b`, whose pods all live in one node network namespace (`jbNn`): one flat network,
the two Nodes differ only in their pod ranges (10.(160+N).1.0/24 and .2.0/24).

What it does, level-triggered (a loop lists the pods bound to its Nodes every 0.3 s):

- registers the Nodes (Ready, heartbeats) and renews their Leases in kube-node-lease;
- for a new pod: an IP from its Node's range, a network namespace `jbNp<uid8>` with a
  veth to the node namespace, the volumes written as a kubelet writes them (configMap,
  secret, downwardAPI, emptyDir, projected with TokenRequest tokens bound to the pod,
  refreshed at 80 % of their life), then each container as a local process: its image is
  looked up in tests/tools/pod-images.json (an unknown image stays ErrImagePull), run
  with `ip netns exec` + `unshare --mount` so that its volumeMounts and /etc/hosts are
  bind-mounted where the pod spec says, with the env a kubelet gives;
- probes (startup, readiness, liveness: httpGet, tcpSocket, exec) from the host, which
  routes to pod IPs; restarts with back-off; status (phase, IPs, conditions, container
  states) PATCHed when it changes; Events;
- a pod being deleted: preStop, SIGTERM, SIGKILL after the grace period, the network
  namespace and volumes removed, then the pod deleted with gracePeriodSeconds 0;
- DNS: no CoreDNS. Each namespace gets a hosts file kept from the Services (ClusterIP
  ones by their ClusterIP, headless ones by their ready pod IPs), bind-mounted over
  /etc/hosts in the namespace's pods and rewritten in place when Services change. This
  stands in for CoreDNS: names resolve through getaddrinfo, not through DNS queries.

Log: one line per action naming ns/pod, on stderr (DIR/pod-runner.log).
"""

import argparse
import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES_FILE = os.path.join(REPO, "tests", "tools", "pod-images.json")
COMPONENT = "jetbridge.dev/pod-runner"
POD_LOOP_SECONDS = 0.3
SERVICE_LOOP_SECONDS = 1.0
NODE_HEARTBEAT_SECONDS = 10
VOLUME_SYNC_SECONDS = 15
EVENT_REPEAT_SECONDS = 30
KUBELET_PORT = 10250                   # container logs, on the node IP (kubectl logs)
BACKOFF_START, BACKOFF_MAX = 2.0, 60.0
STAGING_ROOT = "/run/jetbridge-pods"  # per pod: where its mount namespace sees the node folder
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

LOG_LOCK = threading.Lock()


def log(msg):
    """One line on stderr, with a UTC time stamp."""
    line = "%s %s\n" % (datetime.datetime.utcnow().strftime("%H:%M:%S.%f")[:-3], msg)
    with LOG_LOCK:
        sys.stderr.write(line)
        sys.stderr.flush()


LAST_ERRORS = {}


def log_error(where, error):
    """Log a loop's error, but the same one at most every 10 s (an API server that is
    restarting fails every request of every loop)."""
    key, now = (where, str(error)[:200]), time.time()
    if now - LAST_ERRORS.get(key, 0) >= 10:
        LAST_ERRORS[key] = now
        log("%s: %s" % (where, error))


def now_rfc3339():
    """The time as the API wants it in a Time field."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    """The time as the API wants it in a MicroTime field."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value):
    """An RFC 3339 time from the API as seconds since the epoch."""
    value = value.rstrip("Z").split(".")[0]
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def read_env_file(path):
    """DIR/env: KEY=value lines written with printf %q (simple values only)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
            try:
                parts = shlex.split(value) if value else [""]
                env[key] = parts[0] if parts else ""
            except ValueError:
                env[key] = value
    return env


def run(cmd, check=True, timeout=30):
    """Run a command (a list); raise with its output when it fails and CHECK."""
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), res.returncode,
                                                res.stdout.decode(errors="replace").strip()))
    return res


# ------------------------------------------------------------------ the API ---

class ApiError(Exception):
    """A non-2xx answer of the API server."""

    def __init__(self, status, body):
        super().__init__("HTTP %d: %s" % (status, body[:300]))
        self.status = status


class Api:
    """A small client of the API server: bearer token, TLS verified with the cluster CA.

    One connection per thread, reopened on error."""

    def __init__(self, url, token, ca_file):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 443
        self.token = token
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.local = threading.local()

    def _conn(self):
        """This thread's connection (opened on first use)."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
            self.local.conn = conn
        return conn

    def request(self, method, path, body=None, content_type="application/json"):
        """METHOD PATH with a JSON BODY; the decoded JSON answer. Raises ApiError."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + self.token, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        if resp.status >= 300:
            raise ApiError(resp.status, raw.decode(errors="replace"))
        return json.loads(raw) if raw else {}

    def get(self, path):
        """GET PATH."""
        return self.request("GET", path)

    def patch(self, path, body, kind="merge"):
        """PATCH PATH with a merge (or strategic merge) patch."""
        ctype = {"merge": "application/merge-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}[kind]
        return self.request("PATCH", path, body, ctype)


# ---------------------------------------------------------------- events ---

def post_event(api, pod, etype, reason, message, field_path=None):
    """A core/v1 Event about POD (never raises)."""
    meta = pod["metadata"]
    ref = {"kind": "Pod", "apiVersion": "v1", "namespace": meta["namespace"],
           "name": meta["name"], "uid": meta["uid"]}
    if field_path:
        ref["fieldPath"] = field_path
    ts = now_rfc3339()
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "%s.%s" % (meta["name"], uuid.uuid4().hex[:16]),
                     "namespace": meta["namespace"]},
        "involvedObject": ref, "reason": reason, "message": message[:1000], "type": etype,
        "source": {"component": COMPONENT, "host": pod["spec"].get("nodeName", "")},
        "reportingComponent": COMPONENT, "reportingInstance": pod["spec"].get("nodeName", ""),
        "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
    }
    try:
        api.request("POST", "/api/v1/namespaces/%s/events" % meta["namespace"], event)
    except Exception as e:  # an Event is best effort
        log("%s/%s: event %s not posted: %s" % (meta["namespace"], meta["name"], reason, e))


# ----------------------------------------------------------------- nodes ---

class Nodes:
    """The two Nodes this runner plays the kubelet of, their pod ranges and IP pools."""

    def __init__(self, env):
        self.index = int(env["CLUSTER_INDEX"])
        self.node_ip = env["NODE_IP"]
        self.names = env["NODE_NAMES"].split()
        self.cidrs = {name: ipaddress.ip_network("10.%d.%d.0/24" % (160 + self.index, i + 1))
                      for i, name in enumerate(self.names)}
        self.used = {name: set() for name in self.names}
        self.lock = threading.Lock()

    def allocate(self, node, wanted=None):
        """A free pod IP of NODE's range (WANTED if it is free and in range)."""
        with self.lock:
            net = self.cidrs[node]
            if wanted:
                try:
                    ip = ipaddress.ip_address(wanted)
                    if ip in net and wanted not in self.used[node] and int(ip) - int(net[0]) >= 2:
                        self.used[node].add(wanted)
                        return wanted
                except ValueError:
                    pass
            for host in list(net.hosts())[1:]:
                ip = str(host)
                if ip not in self.used[node]:
                    self.used[node].add(ip)
                    return ip
        raise RuntimeError("no free IP left in %s" % net)

    def release(self, node, ip):
        """Give IP back to NODE's pool."""
        with self.lock:
            self.used.get(node, set()).discard(ip)

    def node_object(self, name):
        """The Node as a kubelet registers it."""
        cidr = str(self.cidrs[name])
        res = {"cpu": "16", "memory": "32Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64", "jetbridge.dev/pod-runner": "true"}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": self.node_status(name, res),
        }

    def node_status(self, name, res=None):
        """Status with fresh heartbeats."""
        ts = now_rfc3339()
        conds = [("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                 ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                 ("PIDPressure", "False", "KubeletHasSufficientPID"),
                 ("Ready", "True", "KubeletReady")]
        status = {
            "conditions": [{"type": t, "status": s, "reason": r,
                            "message": "pod runner (kubelet stand-in) is posting ready status" if t == "Ready" else r,
                            "lastHeartbeatTime": ts, "lastTransitionTime": self.started}
                           for t, s, r in conds],
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.37.2", "kubeProxyVersion": "v1.37.2",
                         "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "jetbridge-pod-runner://1",
                         "osImage": "jetbridge pod runner", "kernelVersion": os.uname().release,
                         "machineID": "", "systemUUID": "", "bootID": ""},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        }
        if res:
            status["capacity"] = res
            status["allocatable"] = res
        return status

    started = now_rfc3339()

    def register(self, api):
        """Create the Nodes (or refresh their status if they exist). Nodes of an earlier
        start of this cluster under another index are deleted (the pod garbage collector
        then removes their pods)."""
        sel = urllib.parse.quote("jetbridge.dev/pod-runner=true")
        for node in api.get("/api/v1/nodes?labelSelector=%s" % sel)["items"]:
            name = node["metadata"]["name"]
            if name not in self.names:
                api.request("DELETE", "/api/v1/nodes/%s" % name)
                log("node %s: of an earlier start, deleted" % name)
        for name in self.names:
            try:
                api.request("POST", "/api/v1/nodes", self.node_object(name))
                log("node %s: registered (pods %s)" % (name, self.cidrs[name]))
            except ApiError as e:
                if e.status != 409:
                    raise
                obj = self.node_object(name)
                api.patch("/api/v1/nodes/%s" % name, {"metadata": obj["metadata"], "spec": obj["spec"]})
                api.patch("/api/v1/nodes/%s/status" % name, {"status": obj["status"]})
                log("node %s: exists, status refreshed" % name)

    def heartbeat(self, api):
        """Node status heartbeats and Lease renewals."""
        for name in self.names:
            api.patch("/api/v1/nodes/%s/status" % name, {"status": self.node_status(name)})
            path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/%s" % name
            try:
                api.patch(path, {"spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                                          "renewTime": now_micro()}})
            except ApiError as e:
                if e.status != 404:
                    raise
                node = api.get("/api/v1/nodes/%s" % name)
                api.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": name,
                         "uid": node["metadata"]["uid"]}]},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                             "renewTime": now_micro()}})


# ------------------------------------------------------------ DNS (hosts) ---

class HostsFiles:
    """One /etc/hosts per namespace, kept from the Services (stands in for CoreDNS)."""

    def __init__(self, node_dir):
        self.dir = os.path.join(node_dir, "hosts")
        os.makedirs(self.dir, exist_ok=True)
        self.services = []     # the last list of Services
        self.slices = []       # the last list of EndpointSlices
        self.pods = {}         # a pod's hosts file -> (namespace, its own line)
        self.lock = threading.Lock()
        # no DNS server in the pod network: a lookup that misses /etc/hosts fails at once
        self.resolv_conf = os.path.join(node_dir, "resolv.conf")
        with open(self.resolv_conf, "w") as f:
            f.write("# no DNS server in the pod network: names resolve through /etc/hosts,\n"
                    "# which the pod runner keeps from the Services (it stands in for CoreDNS)\n"
                    "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        os.chmod(self.resolv_conf, 0o644)

    def path(self, ns):
        """Where the hosts file of NS is."""
        return os.path.join(self.dir, ns)

    def ensure(self, ns):
        """The hosts file of NS (made now if new)."""
        p = self.path(ns)
        if not os.path.exists(p):
            with self.lock:
                write_in_place(p, self.content(ns))
        return p

    def pod_file(self, path, ns, ip, hostname):
        """A pod's own hosts file: its namespace's, plus its IP and host name (as the
        kubelet adds them); kept up to date with the namespace's until forget()."""
        self.ensure(ns)
        with self.lock:
            self.pods[path] = (ns, "%s\t%s\n" % (ip, hostname))
            write_in_place(path, self.content(ns) + self.pods[path][1])
        return path

    def forget(self, path):
        """A pod's hosts file is no longer kept."""
        with self.lock:
            self.pods.pop(path, None)

    def entries(self):
        """(ip, name, ns) for every Service address."""
        ready = {}
        for s in self.slices:
            meta = s["metadata"]
            svc = meta.get("labels", {}).get("kubernetes.io/service-name")
            if not svc:
                continue
            for ep in s.get("endpoints") or []:
                if ep.get("conditions", {}).get("ready") in (True, None):
                    ready.setdefault((meta["namespace"], svc), []).extend(ep.get("addresses", []))
        out = []
        for svc in self.services:
            meta, spec = svc["metadata"], svc.get("spec", {})
            if spec.get("type") == "ExternalName":
                continue
            ip = spec.get("clusterIP")
            ips = [ip] if ip and ip != "None" else sorted(set(ready.get((meta["namespace"], meta["name"]), [])))
            for addr in ips:
                out.append((addr, meta["name"], meta["namespace"]))
        return out

    def content(self, ns):
        """The hosts file of a pod in NS."""
        lines = ["# written by the pod runner (stands in for CoreDNS); namespace %s" % ns,
                 "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for ip, name, sns in sorted(self.entries(), key=lambda e: (e[2], e[1], e[0])):
            names = ["%s.%s.svc.cluster.local" % (name, sns), "%s.%s.svc" % (name, sns),
                     "%s.%s" % (name, sns)]
            if sns == ns:
                names.append(name)
            lines.append("%s\t%s" % (ip, " ".join(names)))
        return "\n".join(lines) + "\n"


    def sync(self, api):
        """List Services and EndpointSlices; rewrite the files that changed."""
        services = api.get("/api/v1/services")["items"]
        slices = api.get("/apis/discovery.k8s.io/v1/endpointslices")["items"]
        with self.lock:
            self.services, self.slices = services, slices
            for ns in os.listdir(self.dir):
                if write_in_place(self.path(ns), self.content(ns)):
                    log("hosts %s: updated from %d Services" % (ns, len(services)))
            for path, (ns, own) in self.pods.items():
                write_in_place(path, self.content(ns) + own)

    def service_env(self, ns):
        """The variables a kubelet adds for the Services of NS (and `kubernetes`)."""
        env = {}
        with self.lock:
            services = list(self.services)
        for svc in services:
            meta, spec = svc["metadata"], svc.get("spec", {})
            ip = spec.get("clusterIP")
            if not ip or ip == "None" or not spec.get("ports"):
                continue
            if meta["namespace"] != ns and not (meta["namespace"] == "default" and meta["name"] == "kubernetes"):
                continue
            prefix = meta["name"].upper().replace("-", "_")
            port = spec["ports"][0]
            env[prefix + "_SERVICE_HOST"] = ip
            env[prefix + "_SERVICE_PORT"] = str(port["port"])
            proto = port.get("protocol", "TCP")
            env[prefix + "_PORT"] = "%s://%s:%d" % (proto.lower(), ip, port["port"])
            for p in spec["ports"]:
                if p.get("name"):
                    env["%s_SERVICE_PORT_%s" % (prefix, p["name"].upper().replace("-", "_"))] = str(p["port"])
                key = "%s_PORT_%d_%s" % (prefix, p["port"], p.get("protocol", "TCP"))
                env[key] = "%s://%s:%d" % (p.get("protocol", "TCP").lower(), ip, p["port"])
                env[key + "_PROTO"] = p.get("protocol", "TCP").lower()
                env[key + "_PORT"] = str(p["port"])
                env[key + "_ADDR"] = ip
        return env


def write_in_place(path, text):
    """Write PATH in place (same inode), so that bind mounts see the change; False if it
    already held TEXT."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+") as f:
        if f.read() == text:
            return False
        f.seek(0)
        f.truncate()
        f.write(text)
    os.chmod(path, 0o644)
    return True


# --------------------------------------------------------------- volumes ---

def atomic_write_dir(target, files, mode=0o644, owner=None):
    """Write FILES ({relative path: (bytes, mode or None)}) into TARGET as the kubelet's
    atomic writer does: a time-stamped folder, `..data` pointing at it, and a symlink per
    top-level entry, so that a directory bind mount sees a whole new set at once.
    Nothing is written when the files are already there as given (returns False)."""
    os.makedirs(target, exist_ok=True)
    if same_content(target, files, mode):
        return False
    stamp = "..%s.%s" % (datetime.datetime.utcnow().strftime("%Y_%m_%d_%H_%M_%S"), uuid.uuid4().hex[:6])
    new = os.path.join(target, stamp)
    os.makedirs(new)
    for rel, (data, fmode) in files.items():
        p = os.path.join(new, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, fmode if fmode is not None else mode)
        if owner:
            os.chown(p, owner[0], owner[1])
    os.chmod(new, 0o755)
    tmp = os.path.join(target, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(stamp, tmp)
    old = os.path.realpath(os.path.join(target, "..data")) if os.path.lexists(os.path.join(target, "..data")) else None
    os.rename(tmp, os.path.join(target, "..data"))
    tops = {rel.split("/")[0] for rel in files}
    for top in tops:
        link = os.path.join(target, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    for entry in os.listdir(target):
        if not entry.startswith("..") and entry not in tops:
            p = os.path.join(target, entry)
            if os.path.islink(p):
                os.unlink(p)
    if old and os.path.basename(old) != stamp and os.path.isdir(old):
        shutil.rmtree(old, ignore_errors=True)
    return True


def same_content(target, files, mode):
    """Whether TARGET's `..data` already holds exactly FILES (bytes and modes): then a
    refresh changes nothing, and a program watching the files sees no event."""
    data = os.path.join(target, "..data")
    if not os.path.isdir(data):
        return False
    present = set()
    for root, _, names in os.walk(data):
        for name in names:
            present.add(os.path.relpath(os.path.join(root, name), data))
    if present != set(files):
        return False
    for rel, (content, fmode) in files.items():
        p = os.path.join(data, rel)
        if os.stat(p).st_mode & 0o7777 != (fmode if fmode is not None else mode):
            return False
        with open(p, "rb") as f:
            if f.read() != content:
                return False
    return True


def key_items(data, items, optional, what):
    """{path: (bytes, mode)} from a ConfigMap's or Secret's DATA, by ITEMS or all keys."""
    out = {}
    if items:
        for it in items:
            if it["key"] not in data:
                if optional:
                    continue
                raise RuntimeError("%s has no key %r" % (what, it["key"]))
            out[it["path"]] = (data[it["key"]], it.get("mode"))
    else:
        for k, v in data.items():
            out[k] = (v, None)
    return out


# ----------------------------------------------------------------- probes ---

class Probe:
    """One probe of one container, counted as the kubelet counts it."""

    def __init__(self, kind, spec, container):
        self.kind, self.spec, self.container = kind, spec, container
        self.success_threshold = spec.get("successThreshold", 1)
        self.failure_threshold = spec.get("failureThreshold", 3)
        self.period = spec.get("periodSeconds", 10)
        self.timeout = spec.get("timeoutSeconds", 1)
        self.delay = spec.get("initialDelaySeconds", 0)
        self.result = kind == "liveness"   # readiness/startup start as failure
        self.successes = self.failures = 0
        self.next_at = None
        self.last_message = ""

    def reset(self, started_at):
        """A new process: the count starts again."""
        self.result = self.kind == "liveness"
        self.successes = self.failures = 0
        self.next_at = started_at + self.delay

    def record(self, ok, message):
        """Count one outcome; True when the result changed."""
        self.last_message = message
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.result and self.successes >= self.success_threshold:
                self.result = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.result and self.failures >= self.failure_threshold:
                self.result = False
                return True
            if self.kind == "startup" and self.failures >= self.failure_threshold:
                return True
        return False


def resolve_port(port, container):
    """A numbered or named container port."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise RuntimeError("no container port named %r" % port)


def http_check(ip, container, spec, timeout):
    """httpGet against the pod IP: (ok, message); 200-399 is a success."""
    port = resolve_port(spec.get("port"), container)
    host = spec.get("host") or ip
    headers = {"User-Agent": "kube-probe/1.37"}
    for h in spec.get("httpHeaders") or []:
        headers[h["name"]] = h["value"]
    if (spec.get("scheme") or "HTTP").upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", spec.get("path") or "/", headers=headers)
        resp = conn.getresponse()
        resp.read(10240)
        ok = 200 <= resp.status < 400
        return ok, "HTTP probe failed with statuscode: %d" % resp.status if not ok else "ok"
    except (OSError, http.client.HTTPException) as e:
        return False, "Get %s:%d%s: %s" % (host, port, spec.get("path") or "/", e)
    finally:
        conn.close()


def tcp_check(ip, container, spec, timeout):
    """tcpSocket against the pod IP."""
    port = resolve_port(spec.get("port"), container)
    try:
        socket.create_connection((spec.get("host") or ip, port), timeout=timeout).close()
        return True, "ok"
    except OSError as e:
        return False, "dial tcp %s:%d: %s" % (ip, port, e)


def exec_in(pid, command, timeout):
    """Run COMMAND in the mount, network and UTS namespaces of process PID."""
    res = subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", "-u", "--"] + list(command),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    return res.returncode == 0, res.stdout.decode(errors="replace")[-500:]


def run_handler(spec, ip, container, pid, timeout):
    """A probe or lifecycle handler (exec, httpGet, tcpSocket, sleep): (ok, message)."""
    try:
        if "exec" in spec:
            return exec_in(pid, spec["exec"]["command"], timeout)
        if "httpGet" in spec:
            return http_check(ip, container, spec["httpGet"], timeout)
        if "tcpSocket" in spec:
            return tcp_check(ip, container, spec["tcpSocket"], timeout)
        if "sleep" in spec:
            time.sleep(min(spec["sleep"].get("seconds", 0), timeout))
            return True, "slept"
        if "grpc" in spec:
            return False, "grpc probes are not supported by the pod runner"
    except subprocess.TimeoutExpired:
        return False, "command timed out after %ss" % timeout
    except Exception as e:
        return False, str(e)
    return False, "no handler"


# ------------------------------------------------------------- containers ---

class Container:
    """One container of a pod: its process, restarts and probes."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.proc = None
        self.log = None
        self.restart_count = 0
        self.waiting = ("ContainerCreating", "")
        self.terminated = None        # dict for the status
        self.last_terminated = None
        self.started_at = None
        self.started_at_ts = None
        self.backoff = BACKOFF_START
        self.next_start = 0.0
        self.probes = {k: Probe(k, spec[k + "Probe"], spec)
                       for k in ("startup", "readiness", "liveness") if spec.get(k + "Probe")}
        self.started = False
        self.done = False             # terminated for good (restartPolicy)

    def running(self):
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def ready(self):
        """Running, started and (if it has one) passing its readiness probe."""
        if not self.running() or not self.started:
            return False
        p = self.probes.get("readiness")
        return p.result if p else True


# -------------------------------------------------------------------- pods ---

class PodWorker(threading.Thread):
    """Runs one pod from setup to deletion."""

    def __init__(self, runner, pod):
        super().__init__(daemon=True, name="pod-" + pod["metadata"]["name"])
        self.runner, self.api = runner, runner.api
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.uid8 = self.uid.replace("-", "")[:8]
        self.node = pod["spec"]["nodeName"]
        self.netns = "jb%dp%s" % (runner.nodes.index, self.uid8)
        self.veth = "p" + self.uid8
        self.dir = os.path.join(runner.node_dir, "pods", "%s_%s_%s" % (self.ns, self.name, self.uid8))
        self.ip = None
        self.containers = [Container(c) for c in pod["spec"].get("containers", [])]
        self.init_containers = [Container(c) for c in pod["spec"].get("initContainers") or []]
        self.initialized = not self.init_containers
        self.start_time = None
        self.conditions = {}          # type -> (status, lastTransitionTime)
        self.last_status = None
        self.failed_status, self.retry_at = None, 0.0
        self.events_sent = {}         # (reason, message, container) -> when posted
        self.tokens = {}              # volume name -> expiry time to refresh at
        self.next_volume_sync = 0.0
        self.finished = False
        self.terminal_phase = None
        self.net_ready = False

    # --------------------------------------------------------------- util
    def say(self, msg):
        """A runner log line about this pod."""
        log("%s/%s: %s" % (self.ns, self.name, msg))

    def event(self, etype, reason, message, container=None):
        """An Event about this pod (or one of its containers); the same one at most
        every EVENT_REPEAT_SECONDS (a failing probe would post one per period)."""
        key, now = (reason, message, container), time.time()
        if now - self.events_sent.get(key, 0) < EVENT_REPEAT_SECONDS:
            return
        self.events_sent[key] = now
        fp = "spec.containers{%s}" % container if container else None
        post_event(self.api, self.pod, etype, reason, message, fp)

    def sec_context(self, c):
        """runAsUser, runAsGroup, fsGroup from the container or the pod."""
        pod_sc = self.pod["spec"].get("securityContext") or {}
        sc = c.spec.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        return uid, gid, pod_sc.get("fsGroup")

    # ------------------------------------------------------------ network
    def setup_network(self):
        """The pod's netns and veth; its IP from the Node's range."""
        node_ns = self.runner.env["NODE_NETNS"]
        self.ip = self.runner.nodes.allocate(self.node, (self.pod.get("status") or {}).get("podIP"))
        cleanup_netns(self.netns, self.veth, node_ns)
        run(["ip", "netns", "add", self.netns])
        run(["ip", "-n", node_ns, "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
             "netns", self.netns])
        run(["ip", "netns", "exec", node_ns, "sysctl", "-qw", "net.ipv4.conf.%s.proxy_arp=1" % self.veth])
        run(["ip", "-n", node_ns, "link", "set", self.veth, "up"])
        run(["ip", "-n", node_ns, "route", "replace", self.ip + "/32", "dev", self.veth])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.netns, "addr", "add", self.ip + "/32", "dev", "eth0"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.netns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"])
        run(["ip", "-n", self.netns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"])
        self.net_ready = True
        self.say("netns %s, IP %s on node %s" % (self.netns, self.ip, self.node))

    # ------------------------------------------------------------ volumes
    def volume_dir(self, name):
        """Where volume NAME is written."""
        return os.path.join(self.dir, "volumes", name)

    def get_object(self, kind, name):
        """A ConfigMap's or Secret's data as bytes per key (None if it does not exist)."""
        path = "/api/v1/namespaces/%s/%s/%s" % (self.ns, kind, name)
        try:
            obj = self.api.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        if kind == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def field_value(self, path):
        """A fieldRef of the downward API."""
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
                  "metadata.uid": meta["uid"], "spec.nodeName": spec.get("nodeName", ""),
                  "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
                  "status.podIP": self.ip or "", "status.podIPs": self.ip or "",
                  "status.hostIP": self.runner.nodes.node_ip, "status.hostIPs": self.runner.nodes.node_ip}
        if path in simple:
            return simple[path]
        m = re.match(r"metadata\.(labels|annotations)\['(.*)'\]$", path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        if path in ("metadata.labels", "metadata.annotations"):
            d = meta.get(path.split(".")[1]) or {}
            return "\n".join('%s="%s"' % (k, d[k]) for k in sorted(d))
        raise RuntimeError("fieldRef %s is not supported by the pod runner" % path)

    def resource_value(self, ref, container_name=None):
        """A resourceFieldRef: the limit or request, else the Node's capacity."""
        cname = ref.get("containerName") or container_name
        for c in self.pod["spec"]["containers"]:
            if c["name"] == cname:
                res = c.get("resources") or {}
                kind, what = ref["resource"].split(".", 1)
                v = (res.get(kind) or {}).get(what)
                if v is not None:
                    return str(v)
        return {"limits.cpu": "16", "limits.memory": str(32 * 1024 ** 3)}.get(ref["resource"], "0")

    def token(self, source):
        """A TokenRequest token bound to this pod: (token, seconds to refresh in)."""
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec = {"expirationSeconds": source.get("expirationSeconds", 3600),
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid}}
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        res = self.api.request("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (self.ns, sa), {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        ttl = parse_time(res["status"]["expirationTimestamp"]) - time.time()
        return res["status"]["token"].encode(), max(5.0, min(ttl * 0.8, 24 * 3600))

    def projected_files(self, proj):
        """The files of a projected volume, and when its token needs a refresh."""
        files, refresh = {}, None
        for src in proj.get("sources") or []:
            if "configMap" in src:
                s = src["configMap"]
                data = self.get_object("configmaps", s["name"])
                if data is None and not s.get("optional"):
                    raise RuntimeError("configmap %r not found" % s["name"])
                files.update(key_items(data or {}, s.get("items"), s.get("optional"), "configmap " + s["name"]))
            elif "secret" in src:
                s = src["secret"]
                data = self.get_object("secrets", s["name"])
                if data is None and not s.get("optional"):
                    raise RuntimeError("secret %r not found" % s["name"])
                files.update(key_items(data or {}, s.get("items"), s.get("optional"), "secret " + s["name"]))
            elif "downwardAPI" in src:
                files.update(self.downward_files(src["downwardAPI"]))
            elif "serviceAccountToken" in src:
                s = src["serviceAccountToken"]
                tok, after = self.token(s)
                files[s["path"]] = (tok, None)
                refresh = after if refresh is None else min(refresh, after)
            elif "clusterTrustBundle" in src or "podCertificate" in src:
                raise RuntimeError("projected source %s is not supported by the pod runner" % list(src))
        return files, refresh

    def downward_files(self, spec):
        """The files of a downwardAPI volume or projection."""
        out = {}
        for it in spec.get("items") or []:
            if "fieldRef" in it:
                value = self.field_value(it["fieldRef"]["fieldPath"])
            else:
                value = self.resource_value(it["resourceFieldRef"])
            out[it["path"]] = (value.encode(), it.get("mode"))
        return out

    def volume_owner(self):
        """Who owns the written files: runAsUser (and fsGroup or runAsGroup), if set."""
        uids = [self.sec_context(c) for c in self.containers]
        for uid, gid, fs in uids:
            if uid is not None:
                return (uid, fs if fs is not None else (gid if gid is not None else 0))
        return None

    def write_volumes(self, initial, kinds=None):
        """Write (or refresh) every volume (or those of KINDS); emptyDir only once."""
        owner = self.volume_owner()
        for vol in self.pod["spec"].get("volumes") or []:
            if kinds and not any(k in vol for k in kinds):
                continue
            name, target = vol["name"], self.volume_dir(vol["name"])
            if "emptyDir" in vol:
                if initial:
                    os.makedirs(target, exist_ok=True)
                    os.chmod(target, 0o777)
                continue
            if "configMap" in vol:
                s = vol["configMap"]
                data = self.get_object("configmaps", s["name"])
                if data is None and not s.get("optional"):
                    raise RuntimeError("configmap %r not found" % s["name"])
                files = key_items(data or {}, s.get("items"), s.get("optional"), "configmap " + s["name"])
                mode = s.get("defaultMode", 0o644)
            elif "secret" in vol:
                s = vol["secret"]
                data = self.get_object("secrets", s["secretName"])
                if data is None and not s.get("optional"):
                    raise RuntimeError("secret %r not found" % s["secretName"])
                files = key_items(data or {}, s.get("items"), s.get("optional"), "secret " + s["secretName"])
                mode = s.get("defaultMode", 0o644)
            elif "downwardAPI" in vol:
                files, mode = self.downward_files(vol["downwardAPI"]), vol["downwardAPI"].get("defaultMode", 0o644)
            elif "projected" in vol:
                files, refresh = self.projected_files(vol["projected"])
                mode = vol["projected"].get("defaultMode", 0o644)
                if refresh is not None:
                    self.tokens[name] = time.time() + refresh
            else:
                if initial:
                    self.say("volume %s: kind %s not supported, left empty" %
                             (name, [k for k in vol if k != "name"]))
                    os.makedirs(target, exist_ok=True)
                continue
            atomic_write_dir(target, files, mode, owner)
        if initial:
            self.say("volumes written: %s" % ", ".join(v["name"] for v in self.pod["spec"].get("volumes") or []))

    def refresh_volumes(self):
        """Every VOLUME_SYNC_SECONDS (or when a token is due): rewrite the volumes."""
        now = time.time()
        due = now >= self.next_volume_sync or any(now >= t for t in self.tokens.values())
        if not due:
            return
        self.next_volume_sync = now + VOLUME_SYNC_SECONDS
        token_due = any(now >= t for t in self.tokens.values())
        try:
            if token_due or not self.tokens:
                self.write_volumes(False)
                if token_due:
                    self.say("projected tokens refreshed")
            else:
                self.refresh_non_token_volumes()
        except Exception as e:
            self.say("volume refresh failed: %s" % e)

    def refresh_non_token_volumes(self):
        """ConfigMap, Secret and downward API volumes (projected ones keep their token)."""
        self.write_volumes(False, kinds=("configMap", "secret", "downwardAPI"))

    # ---------------------------------------------------------- processes
    def image_command(self, c):
        """(argv, None) for a known image, or (None, message)."""
        image = c.spec.get("image", "")
        repo = image.split("@", 1)[0]
        last = repo.rsplit("/", 1)[-1]
        if ":" in last:
            repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
        known = self.runner.images.get(repo)
        if known is None:
            return None, 'image "%s" is not known to the pod runner (%s)' % (image, os.path.relpath(IMAGES_FILE, REPO))
        variables = dict(os.environ)
        variables.update({"REPO": REPO, "PYTHON": self.runner.pod_python})
        for k, v in (known.get("defaults") or {}).items():
            variables.setdefault(k, expand_vars(v, variables))
        entry = [expand_vars(a, variables) for a in known.get("entrypoint", [])]
        args = [expand_vars(a, variables) for a in known.get("args", [])]
        if c.spec.get("command"):
            entry, args = list(c.spec["command"]), list(c.spec.get("args") or [])
        elif c.spec.get("args") is not None:
            args = list(c.spec["args"])
        return entry + args, None

    def container_env(self, c):
        """The env a kubelet gives: Service variables, envFrom, env (in that order)."""
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": self.name, "HOME": "/root"}
        env["KUBERNETES_SERVICE_HOST"] = self.runner.kubernetes_ip
        env["KUBERNETES_SERVICE_PORT"] = "443"
        env["KUBERNETES_SERVICE_PORT_HTTPS"] = "443"
        env["KUBERNETES_PORT"] = "tcp://%s:443" % self.runner.kubernetes_ip
        svc = self.runner.hosts.service_env(self.ns)
        svc.pop("KUBERNETES_SERVICE_PORT", None)
        svc.pop("KUBERNETES_SERVICE_HOST", None)
        if self.pod["spec"].get("enableServiceLinks", True) is False:
            svc = {}
        env.update(svc)
        for src in c.spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                data = self.get_object("configmaps", src["configMapRef"]["name"])
                if data is None and not src["configMapRef"].get("optional"):
                    raise RuntimeError("configmap %r not found" % src["configMapRef"]["name"])
            else:
                data = self.get_object("secrets", src["secretRef"]["name"])
                if data is None and not src["secretRef"].get("optional"):
                    raise RuntimeError("secret %r not found" % src["secretRef"]["name"])
            for k, v in (data or {}).items():
                env[prefix + k] = v.decode(errors="replace")
        for e in c.spec.get("env") or []:
            env[e["name"]] = self.env_value(e, env, c)
        return env

    def env_value(self, e, env, c):
        """One `env` entry's value."""
        if "valueFrom" not in e:
            return expand_refs(e.get("value", ""), env)
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            return self.field_value(vf["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in vf:
            return self.resource_value(vf["resourceFieldRef"], c.name)
        for key, kind in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
            if key in vf:
                ref = vf[key]
                data = self.get_object(kind, ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        return ""
                    raise RuntimeError("%s %r has no key %r" % (kind[:-1], ref["name"], ref["key"]))
                return data[ref["key"]].decode(errors="replace")
        raise RuntimeError("env %s: valueFrom %s not supported" % (e["name"], list(vf)))

    def can_run_as(self, uid, gid, paths):
        """Whether UID can read (and for the program, execute) PATHS."""
        for p, flag in paths:
            res = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % (gid or 0), "--clear-groups",
                                  "--", "test", flag, p], stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                return False, p
        return True, None

    def wrapper(self, c, argv, env):
        """The shell script that mounts the volumes and /etc/hosts, then execs ARGV.

        The node folder is first bind-mounted at a staging path under /run, so that a
        mountPath over a parent of the cluster folder (an emptyDir on /tmp, say) does not
        hide the sources of the mounts after it. Mounts go shallowest path first."""
        stage = os.path.join(STAGING_ROOT, self.netns)
        os.makedirs(stage, exist_ok=True)
        node_dir = self.runner.node_dir

        def staged(path):
            """PATH as the pod's mount namespace sees it before the volume mounts."""
            return os.path.join(stage, os.path.relpath(path, node_dir))

        lines = ["set -e", "hostname %s" % shlex.quote(self.name[:63]),
                 "mount --bind %s %s" % (shlex.quote(node_dir), shlex.quote(stage))]
        vols = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        mounts = sorted(c.spec.get("volumeMounts") or [], key=lambda vm: vm["mountPath"].rstrip("/").count("/"))
        for vm in mounts:
            if vm["name"] not in vols:
                raise RuntimeError("volumeMount %s names no volume" % vm["name"])
            src = self.volume_dir(vm["name"])
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            dst = vm["mountPath"]
            q_src, q_dst = shlex.quote(staged(src)), shlex.quote(dst)
            if os.path.isdir(src):
                lines.append("mkdir -p %s" % q_dst)
            else:
                lines.append("mkdir -p %s; [ -e %s ] || : > %s" % (shlex.quote(os.path.dirname(dst)), q_dst, q_dst))
            lines.append("mount --bind %s %s" % (q_src, q_dst))
            if vm.get("readOnly"):
                lines.append("mount -o remount,ro,bind %s" % q_dst)
        hosts = self.runner.hosts.pod_file(os.path.join(self.dir, "hosts"), self.ns, self.ip, self.name[:63])
        lines.append("mount --bind %s /etc/hosts" % shlex.quote(staged(hosts)))
        lines.append("mount --bind %s /etc/resolv.conf" % shlex.quote(staged(self.runner.hosts.resolv_conf)))
        workdir = c.spec.get("workingDir")
        if workdir:
            lines.append("mkdir -p %s; cd %s" % (shlex.quote(workdir), shlex.quote(workdir)))
        uid, gid, _ = self.sec_context(c)
        priv = []
        if uid is not None:
            prog = argv[0] if "/" in argv[0] else (shutil.which(argv[0], path=env.get("PATH", DEFAULT_PATH)) or argv[0])
            paths = [(prog, "-x")]
            if len(argv) > 1 and os.path.isabs(argv[1]) and argv[1].endswith(".py"):
                paths.append((argv[1], "-r"))
            ok, bad = self.can_run_as(uid, gid, paths)
            if ok:
                priv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % (gid or 0), "--clear-groups", "--"]
            else:
                self.say("container %s: runAsUser %d cannot read %s; running as root" % (c.name, uid, bad))
        argv = self.hold_program(lines, mounts, argv, env)
        envargs = ["%s=%s" % (k, v) for k, v in env.items()]
        lines.append("exec " + " ".join(shlex.quote(a) for a in ["env", "-i"] + envargs + priv + argv))
        return "\n".join(lines) + "\n"

    @staticmethod
    def hold_program(lines, mounts, argv, env):
        """ARGV, run through a descriptor opened before the volume mounts when one of them
        would hide the program (a ConfigMap mounted on /root, say, over a program under
        /root): the script opens it as fd 9 ahead of the mounts (inserted after the staging
        mount, LINES[2]) and ARGV[0] becomes /proc/self/fd/9."""
        prog = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", DEFAULT_PATH))
        if not prog or not os.path.isabs(prog):
            return argv
        hidden = any(prog.startswith(vm["mountPath"].rstrip("/") + "/") for vm in mounts)
        if not hidden:
            return argv
        lines.insert(3, "exec 9<%s" % shlex.quote(prog))
        return ["/proc/self/fd/9"] + list(argv[1:])

    def start_container(self, c):
        """Start C's process (or leave it waiting with the reason)."""
        argv, problem = self.image_command(c)
        if problem:
            if c.waiting[0] != "ErrImagePull":
                self.say("container %s: %s" % (c.name, problem))
                self.event("Warning", "Failed", "Failed to pull image \"%s\": %s" % (c.spec.get("image"), problem), c.name)
                self.event("Warning", "Failed", "Error: ErrImagePull", c.name)
            c.waiting = ("ErrImagePull", problem)
            c.next_start = time.time() + 10
            return
        try:
            env = self.container_env(c)
            argv = [expand_refs(a, env) for a in argv]
            script = self.wrapper(c, argv, env)
        except Exception as e:
            self.say("container %s: cannot start: %s" % (c.name, e))
            if c.waiting[0] != "CreateContainerConfigError":
                self.event("Warning", "Failed", "Error: %s" % e, c.name)
            c.waiting = ("CreateContainerConfigError", str(e))
            c.next_start = time.time() + 5
            return
        script_path = os.path.join(self.dir, "%s.start.sh" % c.name)
        with open(script_path, "w") as f:
            f.write(script)
        if c.restart_count == 0 and c.proc is None:
            self.event("Normal", "Pulled", 'Container image "%s" already present on machine' % c.spec.get("image"), c.name)
        logf = open(os.path.join(self.dir, "%s.log" % c.name), "ab")
        c.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts",
                                   "--propagation", "private", "--", "/bin/sh", script_path],
                                  stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                  start_new_session=True, env={"PATH": DEFAULT_PATH})
        logf.close()
        c.started_at, c.started_at_ts = now_rfc3339(), time.time()
        c.waiting = None
        c.terminated = None
        c.started = "startup" not in c.probes
        for p in c.probes.values():
            p.reset(c.started_at_ts)
        self.say("container %s: started pid %d: %s" % (c.name, c.proc.pid, " ".join(argv)))
        self.event("Normal", "Created", "Created container: %s" % c.name, c.name)
        self.event("Normal", "Started", "Started container %s" % c.name, c.name)
        self.runner.watch_probes(self, c)

    def reap(self, c, restart_policy, init=False):
        """C's process exited: record it; plan the restart or mark it done."""
        code = c.proc.returncode
        exit_code = code if code >= 0 else 128 - code
        c.last_terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                             "startedAt": c.started_at, "finishedAt": now_rfc3339(),
                             "containerID": "jetbridge-pod-runner://%d" % c.proc.pid}
        self.say("container %s: pid %d exited with %d" % (c.name, c.proc.pid, exit_code))
        c.proc = None
        c.started = False
        restart = restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)
        if init and exit_code == 0:
            restart = False
        if not restart:
            c.terminated = c.last_terminated
            c.done = True
            return
        if c.started_at_ts and time.time() - c.started_at_ts > 600:
            c.backoff = BACKOFF_START
        c.restart_count += 1
        c.next_start = time.time() + c.backoff
        c.waiting = ("CrashLoopBackOff", "back-off %ds restarting failed container=%s pod=%s_%s" %
                     (c.backoff, c.name, self.name, self.ns))
        self.event("Warning", "BackOff", "Back-off restarting failed container %s in pod %s_%s" %
                   (c.name, self.name, self.ns), c.name)
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def kill(self, c, sig):
        """Signal C's process group."""
        if c.proc is not None and c.proc.poll() is None:
            try:
                os.killpg(c.proc.pid, sig)
            except ProcessLookupError:
                pass

    # -------------------------------------------------------------- status
    def set_condition(self, ctype, ok):
        """Set a pod condition; its lastTransitionTime moves only on a change."""
        status = "True" if ok else "False"
        old = self.conditions.get(ctype)
        if old is None or old[0] != status:
            self.conditions[ctype] = (status, now_rfc3339())

    def container_status(self, c, init=False):
        """One entry of containerStatuses (or initContainerStatuses)."""
        st = {"name": c.name, "image": c.spec.get("image", ""),
              "imageID": "jetbridge-pod-runner://%s" % c.spec.get("image", ""),
              "ready": c.ready() if not init else bool(c.terminated and c.terminated["exitCode"] == 0),
              "started": c.running() and c.started, "restartCount": c.restart_count}
        if c.running():
            st["state"] = {"running": {"startedAt": c.started_at}}
            st["containerID"] = "jetbridge-pod-runner://%d" % c.proc.pid
        elif c.terminated:
            st["state"] = {"terminated": c.terminated}
            st["containerID"] = c.terminated["containerID"]
        else:
            reason, message = c.waiting or ("ContainerCreating", "")
            st["state"] = {"waiting": {"reason": reason, "message": message} if message else {"reason": reason}}
        if c.last_terminated and c.last_terminated is not c.terminated:
            st["lastState"] = {"terminated": c.last_terminated}
        return st

    def phase(self):
        """Pending, Running, Succeeded or Failed, as the kubelet derives it."""
        if self.terminal_phase:
            return self.terminal_phase
        cs = self.containers
        if cs and all(c.done for c in cs):
            ok = all(c.terminated and c.terminated["exitCode"] == 0 for c in cs)
            return "Succeeded" if ok else "Failed"
        if self.initialized and any(c.running() or c.restart_count or c.done for c in cs):
            return "Running"
        return "Pending"

    def status(self):
        """The pod status as the kubelet would write it now."""
        all_ready = bool(self.containers) and all(c.ready() for c in self.containers)
        self.set_condition("PodScheduled", True)
        self.set_condition("Initialized", self.initialized)
        self.set_condition("ContainersReady", all_ready)
        self.set_condition("Ready", all_ready)
        if self.net_ready:
            self.set_condition("PodReadyToStartContainers", True)
        st = {"phase": self.phase(), "hostIP": self.runner.nodes.node_ip,
              "hostIPs": [{"ip": self.runner.nodes.node_ip}],
              "conditions": [{"type": t, "status": s, "lastTransitionTime": ts, "lastProbeTime": None}
                             for t, (s, ts) in sorted(self.conditions.items())],
              "containerStatuses": [self.container_status(c) for c in self.containers]}
        if self.init_containers:
            st["initContainerStatuses"] = [self.container_status(c, True) for c in self.init_containers]
        if self.ip:
            st["podIP"] = self.ip
            st["podIPs"] = [{"ip": self.ip}]
        if self.start_time:
            st["startTime"] = self.start_time
        return st

    def push_status(self):
        """PATCH the status subresource when it changed."""
        st = self.status()
        if st == self.last_status:
            return
        if st == self.failed_status and time.time() < self.retry_at:
            return
        try:
            self.api.patch("/api/v1/namespaces/%s/pods/%s/status" % (self.ns, self.name), {"status": st})
            changes = describe_change(self.last_status, st)
            self.last_status = st
            self.say("status: %s" % changes)
        except ApiError as e:
            if e.status == 404:
                self.finished = True
            else:
                self.status_failed(st, e)
        except Exception as e:
            self.status_failed(st, e)

    def status_failed(self, st, e):
        """Log a failed status PATCH once; the same status is retried after 5 s."""
        if st != self.failed_status:
            self.say("status patch failed: %s" % e)
        self.failed_status, self.retry_at = st, time.time() + 5

    # ---------------------------------------------------------------- run
    def run(self):
        try:
            self.main()
        except Exception as e:
            self.say("failed: %s" % e)
            self.event("Warning", "FailedPodRunner", "pod runner: %s" % e)
            try:
                self.teardown()
            except Exception as e2:
                self.say("teardown failed: %s" % e2)
        finally:
            self.runner.worker_done(self)

    def prepare(self):
        """Network and volumes; retried until they work or the pod goes away."""
        while True:
            if self.pod["metadata"].get("deletionTimestamp") or self.finished:
                return False
            try:
                os.makedirs(self.dir, exist_ok=True)
                if not self.net_ready:
                    self.setup_network()
                self.write_volumes(True)
                self.next_volume_sync = time.time() + VOLUME_SYNC_SECONDS
                return True
            except Exception as e:
                self.say("setup failed (retrying): %s" % e)
                self.event("Warning", "FailedMount", "pod runner setup: %s" % e)
                for c in self.containers:
                    c.waiting = ("ContainerCreating", str(e)[:300])
                self.push_status()
                time.sleep(3)

    def main(self):
        """Set up, then run the containers until the pod is deleted or lost."""
        self.start_time = now_rfc3339()
        self.say("accepted on node %s" % self.node)
        self.push_status()
        if not self.prepare():
            self.teardown()
            return
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.finished:
            if self.pod["metadata"].get("deletionTimestamp"):
                self.terminate()
                return
            self.step(policy)
            self.refresh_volumes()
            self.push_status()
            time.sleep(0.2)
        self.teardown(delete=False)

    def step(self, policy):
        """Start, reap and restart processes (init containers first)."""
        now = time.time()
        if not self.initialized:
            for c in self.init_containers:
                if c.done:
                    continue
                if c.proc is not None and c.proc.poll() is not None:
                    self.reap(c, policy if policy != "Always" else "OnFailure", init=True)
                if c.done:
                    if c.terminated["exitCode"] != 0:
                        self.terminal_phase = "Failed"
                    continue
                if c.proc is None and now >= c.next_start:
                    self.start_container(c)
                return
            self.initialized = True
        if self.terminal_phase:
            return
        for c in self.containers:
            if c.proc is not None and c.proc.poll() is not None:
                self.reap(c, policy)
            if c.proc is None and not c.done and now >= c.next_start:
                self.start_container(c)

    def terminate(self):
        """Graceful deletion: preStop, SIGTERM, SIGKILL after the grace period; then
        remove everything and delete the pod object."""
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        t0 = time.time()
        deadline = t0 + grace
        self.say("deleting: grace %ss" % grace)
        running = [c for c in self.containers + self.init_containers if c.running()]
        for c in running:
            self.event("Normal", "Killing", "Stopping container %s" % c.name, c.name)
        hooks = []
        for c in running:
            pre = ((c.spec.get("lifecycle") or {}).get("preStop"))
            if pre and grace > 0:
                th = threading.Thread(target=self.pre_stop, args=(c, pre, max(1, deadline - time.time())), daemon=True)
                th.start()
                hooks.append(th)
        while any(h.is_alive() for h in hooks) and time.time() < deadline:
            self.push_status()
            time.sleep(0.2)
        for c in running:
            self.kill(c, signal.SIGTERM)
        self.say("SIGTERM sent to %d container(s)" % len(running))
        kill_at = max(deadline, time.time() + 2 if grace > 0 else time.time())
        while any(c.running() for c in running) and time.time() < kill_at:
            self.push_status()
            time.sleep(0.2)
        for c in running:
            if c.running():
                self.say("container %s: SIGKILL after the grace period" % c.name)
                self.kill(c, signal.SIGKILL)
        for c in running:
            if c.proc is not None:
                try:
                    c.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                code = c.proc.returncode if c.proc.returncode is not None else -9
                c.terminated = {"exitCode": code if code >= 0 else 128 - code,
                                "reason": "Completed" if code == 0 else "Error",
                                "startedAt": c.started_at, "finishedAt": now_rfc3339(),
                                "containerID": "jetbridge-pod-runner://%d" % c.proc.pid}
                c.proc = None
                c.done = True
        self.push_status()
        self.teardown()

    def pre_stop(self, c, handler, timeout):
        """A preStop hook; exec runs in the container's namespaces."""
        pid = c.proc.pid if c.proc else 0
        ok, msg = run_handler(handler, self.ip, c.spec, pid, timeout)
        self.say("container %s: preStop %s" % (c.name, "done" if ok else "failed: " + msg))
        if not ok:
            self.event("Warning", "FailedPreStopHook", "PreStopHook failed: %s" % msg, c.name)

    def teardown(self, delete=True):
        """Kill what is left, remove the netns and the volumes, free the IP, and (when
        the pod is being deleted) delete the pod object with grace 0 and a uid precondition."""
        for c in self.containers + self.init_containers:
            self.kill(c, signal.SIGKILL)
        cleanup_netns(self.netns, self.veth, self.runner.env["NODE_NETNS"])
        shutil.rmtree(os.path.join(self.dir, "volumes"), ignore_errors=True)
        remove_staging(self.netns)
        self.runner.hosts.forget(os.path.join(self.dir, "hosts"))
        if self.ip:
            self.runner.nodes.release(self.node, self.ip)
        self.net_ready = False
        self.say("netns %s and volumes removed" % self.netns)
        if delete:
            try:
                self.api.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % (self.ns, self.name),
                                 {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                  "preconditions": {"uid": self.uid}})
                self.say("deleted")
            except ApiError as e:
                if e.status not in (404, 409):
                    self.say("delete failed: %s" % e)
        self.finished = True


def describe_change(old, new):
    """A short account of a status change for the log."""
    def summary(st):
        """Phase, IP, Ready and the container states."""
        if not st:
            return "-"
        cs = ",".join("%s=%s%s" % (c["name"], list(c["state"])[0],
                                   "/ready" if c["ready"] else "") for c in st["containerStatuses"])
        ready = [c["status"] for c in st["conditions"] if c["type"] == "Ready"]
        return "%s ip=%s ready=%s [%s]" % (st["phase"], st.get("podIP", "-"), ready[0] if ready else "-", cs)
    return summary(new)


def expand_vars(value, variables):
    """${VAR} from VARIABLES (pod-images.json)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), value)


def expand_refs(value, env):
    """Kubernetes $(VAR) references in command, args and env values; $$ escapes."""
    def sub(m):
        """One reference."""
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, value)


def remove_staging(netns):
    """The empty staging folder of a pod (nothing is mounted on it outside the pod)."""
    try:
        os.rmdir(os.path.join(STAGING_ROOT, netns))
    except OSError:
        pass


def cleanup_netns(netns, veth, node_ns):
    """Kill what runs in NETNS, delete it and the node side of its veth (idempotent)."""
    if os.path.exists("/run/netns/" + netns):
        res = run(["ip", "netns", "pids", netns], check=False)
        for pid in res.stdout.decode().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "delete", netns], check=False)
    run(["ip", "-n", node_ns, "link", "del", veth], check=False)


# ------------------------------------------------------ logs (kubelet API) ---

class LogHandler(http.server.BaseHTTPRequestHandler):
    """GET /containerLogs/NS/POD/CONTAINER[?follow&tailLines&limitBytes]: what the API
    server's pods/log subresource (`kubectl logs`) asks a kubelet for."""

    protocol_version = "HTTP/1.1"
    runner = None

    def log_message(self, fmt, *args):
        """Quiet: the API server asks often."""

    def do_GET(self):
        """One container's log file, optionally followed while the container runs."""
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.send_error(404, "only /containerLogs/NS/POD/CONTAINER is served")
            return
        _, ns, name, container = parts
        query = urllib.parse.parse_qs(url.query)
        worker = self.runner.find_worker(ns, name)
        path = os.path.join(worker.dir, container + ".log") if worker else None
        if not path or not os.path.exists(path):
            self.send_error(404, "no log of %s/%s/%s here" % (ns, name, container))
            return
        with open(path, "rb") as f:
            data = f.read()
        if "tailLines" in query:
            n = int(query["tailLines"][0])
            data = b"".join(data.splitlines(keepends=True)[-n:]) if n > 0 else b""
        if "limitBytes" in query:
            data = data[: int(query["limitBytes"][0])]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.chunk(data)
        if query.get("follow", ["false"])[0] in ("true", "1"):
            self.follow(path, worker, container)
        self.chunk(b"")

    def chunk(self, data):
        """One chunk of the chunked body (empty: the end)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def follow(self, path, worker, container):
        """Send what is appended while the container runs and the client listens."""
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            while not worker.finished:
                data = f.read()
                if data:
                    self.chunk(data)
                else:
                    time.sleep(0.3)


def serve_logs(runner, netns, ip, cert, key):
    """The log endpoint on IP:KUBELET_PORT inside NETNS: the serving thread enters the
    node's network namespace (setns acts on the calling thread only) and binds there."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/run/netns/" + netns, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns %s" % netns)
    os.close(fd)
    LogHandler.runner = runner
    server = http.server.ThreadingHTTPServer((ip, KUBELET_PORT), LogHandler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    log("container logs served on https://%s:%d (kubectl logs)" % (ip, KUBELET_PORT))
    server.serve_forever()


def make_serving_cert(folder, ip):
    """A self-signed certificate for the log endpoint (the API server does not verify
    a kubelet's serving certificate unless told to)."""
    cert, key = os.path.join(folder, "kubelet.crt"), os.path.join(folder, "kubelet.key")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "3650", "-subj", "/CN=jetbridge-pod-runner", "-keyout", key, "-out", cert,
         "-addext", "subjectAltName=IP:%s" % ip])
    return cert, key


# ---------------------------------------------------------------- runner ---

class Runner:
    """The loops: pods of the Nodes, Services for DNS, node heartbeats."""

    def __init__(self, cluster_dir):
        self.env = read_env_file(os.path.join(cluster_dir, "env"))
        for key in ("APISERVER_URL", "ADMIN_TOKEN", "CA_FILE", "CLUSTER_INDEX", "NODE_NETNS",
                    "NODE_IP", "NODE_NAMES", "SERVICE_CIDR"):
            if not self.env.get(key):
                raise SystemExit("pod_runner: %s missing from %s/env (is this a 1.37 cluster?)" % (key, cluster_dir))
        self.api = Api(self.env["APISERVER_URL"], self.env["ADMIN_TOKEN"], self.env["CA_FILE"])
        self.nodes = Nodes(self.env)
        self.node_dir = self.env.get("NODE_DIR") or os.path.join(cluster_dir, "node")
        os.makedirs(os.path.join(self.node_dir, "pods"), exist_ok=True)
        self.hosts = HostsFiles(self.node_dir)
        self.kubernetes_ip = str(ipaddress.ip_network(self.env["SERVICE_CIDR"])[1])
        with open(IMAGES_FILE) as f:
            self.images = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
        self.pod_python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        self.workers = {}
        self.done_uids = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def cleanup_leftovers(self):
        """Pods of an earlier run of this runner: kill, remove their netns and folders."""
        prefix = "jb%dp" % self.nodes.index
        for ns in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
            if ns.startswith(prefix):
                cleanup_netns(ns, "p" + ns[len(prefix):], self.env["NODE_NETNS"])
                log("leftover netns %s removed" % ns)
        if os.path.isdir(STAGING_ROOT):
            for d in os.listdir(STAGING_ROOT):
                if d.startswith(prefix):
                    remove_staging(d)
        pods_dir = os.path.join(self.node_dir, "pods")
        for d in os.listdir(pods_dir):
            shutil.rmtree(os.path.join(pods_dir, d), ignore_errors=True)

    def find_worker(self, ns, name):
        """The worker of pod NS/NAME, if this runner runs it."""
        with self.lock:
            for w in self.workers.values():
                if w.ns == ns and w.name == name:
                    return w
        return None

    def start_log_server(self):
        """The kubelet's log endpoint, in a thread (a failure is logged, not fatal)."""
        def serve():
            try:
                cert, key = make_serving_cert(self.node_dir, self.nodes.node_ip)
                serve_logs(self, self.env["NODE_NETNS"], self.nodes.node_ip, cert, key)
            except Exception as e:
                log("container log endpoint not served: %s" % e)
        threading.Thread(target=serve, daemon=True, name="logs").start()

    def worker_done(self, worker):
        """A worker ended: remember its uid so that it is not started again."""
        with self.lock:
            self.done_uids.add(worker.uid)
            self.workers.pop(worker.uid, None)

    def watch_probes(self, worker, c):
        """One thread per probe of a running container."""
        for p in c.probes.values():
            threading.Thread(target=self.probe_loop, args=(worker, c, p, c.proc), daemon=True,
                             name="probe-%s-%s" % (c.name, p.kind)).start()

    def probe_loop(self, worker, c, p, proc):
        """Probe while PROC runs (readiness goes on while the pod terminates)."""
        while proc.poll() is None and not self.stopping.is_set():
            now = time.time()
            if now < p.next_at:
                time.sleep(min(0.1, p.next_at - now))
                continue
            p.next_at = now + p.period
            if p.kind != "startup" and not c.started:
                continue
            if p.kind == "startup" and c.started:
                return
            if p.kind == "liveness" and worker.pod["metadata"].get("deletionTimestamp"):
                continue
            ok, msg = run_handler(p.spec, worker.ip, c.spec, proc.pid, p.timeout)
            if proc.poll() is not None:
                return
            changed = p.record(ok, msg)
            if not ok:
                worker.event("Warning", "Unhealthy", "%s probe failed: %s" % (p.kind.capitalize(), msg), c.name)
            if not changed:
                continue
            worker.say("container %s: %s probe %s" % (c.name, p.kind, "succeeded" if p.result else "failed: " + msg))
            if p.kind == "startup" and p.result:
                c.started = True
            elif not p.result and p.kind in ("liveness", "startup"):
                worker.event("Normal", "Killing", "Container %s failed %s probe, will be restarted" % (c.name, p.kind), c.name)
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    grace = p.spec.get("terminationGracePeriodSeconds")
                    if grace is None:
                        grace = worker.pod["spec"].get("terminationGracePeriodSeconds", 30)
                    proc.wait(timeout=max(grace, 1))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    def pod_loop(self):
        """Every POD_LOOP_SECONDS: the pods bound to the Nodes."""
        while not self.stopping.is_set():
            try:
                seen = set()
                for node in self.nodes.names:
                    sel = urllib.parse.quote("spec.nodeName=%s" % node)
                    pods = self.api.get("/api/v1/pods?fieldSelector=%s" % sel)["items"]
                    for pod in pods:
                        seen.add(pod["metadata"]["uid"])
                        self.handle(pod)
                with self.lock:
                    gone = [w for uid, w in self.workers.items() if uid not in seen]
                for w in gone:
                    if not w.finished:
                        w.say("pod object gone; stopping it")
                        w.finished = True
            except Exception as e:
                log_error("pod loop", e)
            self.stopping.wait(POD_LOOP_SECONDS)

    def handle(self, pod):
        """Start a worker for a new pod, hand the latest object to a known one."""
        uid = pod["metadata"]["uid"]
        phase = (pod.get("status") or {}).get("phase")
        with self.lock:
            w = self.workers.get(uid)
            if w is not None:
                w.pod = pod
                return
            if uid in self.done_uids:
                return
            if pod["metadata"].get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    self.done_uids.add(uid)
                    threading.Thread(target=self.delete_untracked, args=(pod,), daemon=True).start()
                return
            w = PodWorker(self, pod)
            self.workers[uid] = w
        w.start()

    def delete_untracked(self, pod):
        """A pod being deleted that no worker runs (runner restarted): remove it."""
        meta = pod["metadata"]
        uid8 = meta["uid"].replace("-", "")[:8]
        cleanup_netns("jb%dp%s" % (self.nodes.index, uid8), "p" + uid8, self.env["NODE_NETNS"])
        try:
            self.api.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % (meta["namespace"], meta["name"]),
                             {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
            log("%s/%s: deleted (not running here)" % (meta["namespace"], meta["name"]))
        except Exception as e:
            log("%s/%s: delete failed: %s" % (meta["namespace"], meta["name"], e))

    def service_loop(self):
        """Every SERVICE_LOOP_SECONDS: the hosts files from the Services."""
        while not self.stopping.is_set():
            try:
                self.hosts.sync(self.api)
            except Exception as e:
                log_error("service loop", e)
            self.stopping.wait(SERVICE_LOOP_SECONDS)

    def node_loop(self):
        """Every NODE_HEARTBEAT_SECONDS: Node heartbeats and Leases."""
        while not self.stopping.is_set():
            try:
                self.nodes.heartbeat(self.api)
            except Exception as e:
                log_error("node heartbeat", e)
            self.stopping.wait(NODE_HEARTBEAT_SECONDS)

    def shutdown(self):
        """Stop every pod's processes and remove its netns (the pod objects stay)."""
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.finished = True
            for c in w.containers + w.init_containers:
                w.kill(c, signal.SIGTERM)
        deadline = time.time() + 5
        for w in workers:
            for c in w.containers + w.init_containers:
                while c.running() and time.time() < deadline:
                    time.sleep(0.1)
                w.kill(c, signal.SIGKILL)
            cleanup_netns(w.netns, w.veth, self.env["NODE_NETNS"])
        self.cleanup_leftovers()
        log("stopped: %d pod(s) stopped" % len(workers))

    def main(self):
        """Clean up, register the Nodes, start the loops; the pod loop runs here."""
        log("pod runner (kubelet stand-in) for nodes %s in netns %s, API %s" %
            (" ".join(self.nodes.names), self.env["NODE_NETNS"], self.env["APISERVER_URL"]))
        self.cleanup_leftovers()
        self.nodes.register(self.api)
        self.nodes.heartbeat(self.api)
        try:
            self.hosts.sync(self.api)
        except Exception as e:
            log("service loop: %s" % e)
        self.start_log_server()
        for target in (self.node_loop, self.service_loop):
            threading.Thread(target=target, daemon=True, name=target.__name__).start()
        self.pod_loop()


def main():
    """Run until SIGTERM or SIGINT, then stop the pods."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cluster-dir", required=True)
    args = ap.parse_args()
    # ip, sysctl, nsenter, setpriv: whatever PATH the runner was started with
    os.environ["PATH"] = DEFAULT_PATH + ":" + os.environ.get("PATH", "")
    runner = Runner(os.path.abspath(args.cluster_dir))

    def on_signal(signum, frame):
        """Stop the loops; main() then stops the pods."""
        log("signal %d: stopping" % signum)
        runner.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.main()
    runner.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
