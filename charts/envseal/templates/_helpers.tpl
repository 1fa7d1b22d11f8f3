{{/* Names and labels. */}}
{{- define "envseal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "envseal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "envseal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "envseal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "envseal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "envseal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: envseal
{{- end }}

{{- define "envseal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "envseal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "envseal.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "envseal.metricsServiceName" -}}
{{- printf "%s-metrics" (include "envseal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
What the controller does with the EnvelopeSecrets and Secrets of a watched namespace:
the rules of the ClusterRole (cluster-wide mode) or of each namespace's Role (namespaced
mode). docs/helm.md explains each rule; test/e2e/chart.test.ts proves they are enough.
*/}}
{{- define "envseal.workloadRules" -}}
# Watch EnvelopeSecrets (informer: list + watch; a GET on a cache miss).
- apiGroups: [envseal.dev]
  resources: [envelopesecrets]
  verbs: [get, list, watch]
# Ready condition, observedGeneration (merge patch of the status subresource).
- apiGroups: [envseal.dev]
  resources: [envelopesecrets/status]
  verbs: [patch]
# The Secret's owner reference sets blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin allows only to who may update
# the owner's finalizers.
- apiGroups: [envseal.dev]
  resources: [envelopesecrets/finalizers]
  verbs: [update]
# The materialized Secrets: informer (list + watch, label app.kubernetes.io/managed-by=envseal),
# GET of a Secret not in the cache (ownership check), server-side apply (patch; create
# when it does not exist), JSON patch removing foreign keys, delete + recreate of an
# immutable Secret whose data or type changes.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# Events on EnvelopeSecrets (Synced, failures, RolloutRestarted).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.rolloutRestart }}
# spec.restartWorkloads: read the pod template, merge-patch its data-hash annotation.
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, patch]
{{- end }}
{{- end }}

{{/* Fails the render on contradictory values that the schema cannot express. */}}
{{- define "envseal.validate" -}}
{{- with .Values.providers.vaultTransit }}
{{- if and .caCert.configMap .caCert.secret }}
{{- fail "providers.vaultTransit.caCert: set configMap or secret, not both" }}
{{- end }}
{{- if and (or .caCert.configMap .caCert.secret) (not (hasPrefix "https://" .address)) }}
{{- fail "providers.vaultTransit.caCert is set, but providers.vaultTransit.address is not an https:// URL: the CA verifies Vault's TLS certificate" }}
{{- end }}
{{- end }}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without a leader, replicas would write concurrently" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- range $namespace, $types := .Values.tenancy.secretTypes.allowed }}
{{- range $types }}
{{- if has . (list "kubernetes.io/service-account-token" "bootstrap.kubernetes.io/token") }}
{{- fail (printf "tenancy.secretTypes.allowed.%s lists %s: the cluster mints the content of that type (credentials); it is never sealed data and cannot be allowed" $namespace .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Secret types a namespace may ask for, as a CEL list expression over request.namespace:
the defaults (DEFAULT_SECRET_TYPES in src/api/policy.ts; a chart test compares them), the
types listed under "*", and the namespace's own. Names and types are schema-checked, so
they need no escaping inside the single quotes.
*/}}
{{- define "envseal.allowedSecretTypesCel" -}}
{{- $allowed := .Values.tenancy.secretTypes.allowed -}}
{{- $everywhere := concat (list "Opaque" "kubernetes.io/tls" "kubernetes.io/dockerconfigjson" "kubernetes.io/dockercfg" "kubernetes.io/basic-auth" "kubernetes.io/ssh-auth") (get $allowed "*" | default list) -}}
{{- $quoted := list -}}
{{- range $everywhere }}{{ $quoted = append $quoted (printf "'%s'" .) }}{{ end -}}
{{- $entries := list -}}
{{- range $namespace, $types := $allowed -}}
{{- if and (ne $namespace "*") $types -}}
{{- $typesQuoted := list -}}
{{- range $types }}{{ $typesQuoted = append $typesQuoted (printf "'%s'" .) }}{{ end -}}
{{- $entries = append $entries (printf "'%s': [%s]" $namespace (join ", " $typesQuoted)) -}}
{{- end -}}
{{- end -}}
[{{ join ", " $quoted }}] + (request.namespace in {{ "{" }}{{ join ", " $entries }}{{ "}" }} ? {{ "{" }}{{ join ", " $entries }}{{ "}" }}[request.namespace] : [])
{{- end }}

{{/* --allowed-secret-types flags from tenancy.secretTypes.allowed, one per namespace. */}}
{{- define "envseal.allowedSecretTypesArgs" -}}
{{- range $namespace, $types := .Values.tenancy.secretTypes.allowed }}
{{- if $types }}
- {{ printf "--allowed-secret-types=%s=%s" $namespace (join "," $types) | quote }}
{{- end }}
{{- end }}
{{- end }}
