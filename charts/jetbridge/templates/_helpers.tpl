{{/*
The chart name (nameOverride if set).
*/}}
{{- define "jetbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else the release
name when it already contains the chart name, else `<release>-<chart>`.
Truncated to 57 characters so that `<fullname>-proxy` still fits in 63.
*/}}
{{- define "jetbridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "jetbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "jetbridge.labels" -}}
helm.sh/chart: {{ include "jetbridge.chart" . }}
{{ include "jetbridge.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels selecting the pods.
*/}}
{{- define "jetbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jetbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the controller runs as.
*/}}
{{- define "jetbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jetbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The proxy Service (also the --publish-service of the Ingress status).
*/}}
{{- define "jetbridge.proxyServiceName" -}}
{{- printf "%s-proxy" (include "jetbridge.fullname" .) }}
{{- end }}

{{/*
The bootstrap Secret's name (in the release namespace).
*/}}
{{- define "jetbridge.bootstrapSecretName" -}}
{{- default .Values.bootstrapSecret.name .Values.bootstrapSecret.existingSecret }}
{{- end }}

{{/*
The revocation list ConfigMap, as the controller names it from the leader
election id: `<id without a trailing -leader>-revocations`.
*/}}
{{- define "jetbridge.revocationsName" -}}
{{- printf "%s-revocations" (trimSuffix "-leader" .Values.leaderElectionId) }}
{{- end }}

{{- define "jetbridge.hostClaimsName" -}}
{{- printf "%s-host-claims" (trimSuffix "-leader" .Values.leaderElectionId) }}
{{- end }}

{{/*
The authenticate service URL: authenticate.url, else https://<authenticate.host>.
*/}}
{{- define "jetbridge.authenticateUrl" -}}
{{- if .Values.authenticate.url }}
{{- trimSuffix "/" .Values.authenticate.url }}
{{- else if .Values.authenticate.host }}
{{- printf "https://%s" .Values.authenticate.host }}
{{- end }}
{{- end }}

{{/*
"true" when an identity provider is configured: an issuer URL, or Google (whose
issuer the controller knows).
*/}}
{{- define "jetbridge.idpEnabled" -}}
{{- if or .Values.idp.providerUrl (eq .Values.idp.provider "google") }}true{{ end }}
{{- end }}

{{/*
The Secret holding the IdP client secret, and its key; empty when there is none.
*/}}
{{- define "jetbridge.idpSecretName" -}}
{{- if include "jetbridge.idpEnabled" . }}
{{- if .Values.idp.existingSecret }}
{{- .Values.idp.existingSecret }}
{{- else if .Values.idp.clientSecret }}
{{- printf "%s-idp" (include "jetbridge.fullname" .) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jetbridge.idpSecretKey" -}}
{{- if .Values.idp.existingSecret }}
{{- .Values.idp.existingSecretKey }}
{{- else }}
{{- print "client_secret" }}
{{- end }}
{{- end }}

{{/*
config.yaml: the global settings (same keys as `jetbridge standalone`).
*/}}
{{- define "jetbridge.config" -}}
{{- $auth := include "jetbridge.authenticateUrl" . }}
{{- if $auth }}
authenticate_service_url: {{ $auth | quote }}
{{- end }}
{{- if include "jetbridge.idpEnabled" . }}
{{- if not $auth }}
{{- fail "authenticate.host (or authenticate.url) is required with an identity provider: the IdP redirects back to <authenticate URL>/oauth2/callback" }}
{{- end }}
idp_provider: {{ .Values.idp.provider | quote }}
{{- with .Values.idp.providerUrl }}
idp_provider_url: {{ . | quote }}
{{- end }}
idp_client_id: {{ required "idp.clientId is required with an identity provider" .Values.idp.clientId | quote }}
{{- if include "jetbridge.idpSecretName" . }}
idp_client_secret_file: /etc/jetbridge/idp/client_secret
{{- end }}
{{- with .Values.idp.scopes }}
idp_scopes:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
cookie_name: {{ .Values.cookieName | quote }}
{{- if .Values.defaultCertificate.secretName }}
certificates:
  - cert_file: /etc/jetbridge/tls/tls.crt
    key_file: /etc/jetbridge/tls/tls.key
{{- end }}
{{- with .Values.jwtClaimsHeaders }}
jwt_claims_headers:
{{- toYaml . | nindent 2 }}
{{- end }}
log_level: {{ .Values.logLevel | quote }}
{{- if not .Values.decisionLog.enabled }}
authorize_log: false
{{- end }}
{{- with .Values.decisionLog.fields }}
authorize_log_fields:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tracing }}
{{- if .provider }}
tracing_provider: {{ .provider | quote }}
tracing_otlp_endpoint: {{ required "tracing.otlpEndpoint is required when tracing.provider is set" .otlpEndpoint | quote }}
tracing_sample_rate: {{ .sampleRate }}
{{- end }}
{{- end }}
{{- end }}

{{/*
RBAC rules for the namespaced kinds the controller watches: in a ClusterRole
when all namespaces are watched, else in a Role per watched namespace.
*/}}
{{- define "jetbridge.rbac.watchRules" -}}
# Ingresses to serve, their jetbridge.dev/status annotation (patch) and their
# status.loadBalancer, both written by the leader.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["get", "update", "patch"]
# Policy objects referenced by Ingresses, and their Accepted condition.
- apiGroups: ["jetbridge.dev"]
  resources: ["policies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["jetbridge.dev"]
  resources: ["policies/status"]
  verbs: ["get", "update", "patch"]
# Gateway API routes to serve (when its CRDs are installed), the grants that
# let them cross namespaces, and the status the leader writes.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways", "httproutes", "grpcroutes", "referencegrants"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways/status", "httproutes/status", "grpcroutes/status"]
  verbs: ["get", "update", "patch"]
# Pomerium's PolicyFilters named by HTTPRoute rules (when their CRD is
# installed), and their Valid condition.
- apiGroups: ["gateway.pomerium.io"]
  resources: ["policyfilters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.pomerium.io"]
  resources: ["policyfilters/status"]
  verbs: ["get", "update", "patch"]
# Backends: Services and their ready endpoints. Each Gateway's own Service
# and EndpointSlice (an address per Gateway, owned by the Gateway), applied by
# the leader: `create` and `patch` (server-side apply), `delete` when the
# Gateway stops being of a jetbridge class.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Secrets named by Ingresses. The controller lists and watches only
# Secrets of the types routes can name (field selectors type=kubernetes.io/tls,
# type=Opaque, type=kubernetes.io/service-account-token),
# but RBAC cannot express a field selector: this grants read access to every
# Secret in scope. Narrow the scope with watchNamespaces.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Events on Ingresses and Policies (InvalidRoute, Programmed...).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Refuses a cluster that does not serve an API the controller reads:
discovery.k8s.io/v1 EndpointSlices, served from Kubernetes 1.21. A cluster
reporting an older version is accepted only if it serves that API anyway.
*/}}
{{- define "jetbridge.requireApis" -}}
{{- $served := .Capabilities.APIVersions.Has "discovery.k8s.io/v1/EndpointSlice" }}
{{- if and (not $served) (semverCompare "<1.21-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "jetbridge needs Kubernetes 1.21 or newer: it reads discovery.k8s.io/v1 EndpointSlices, which this cluster (%s) does not serve" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- end }}
