{{/* The chart's name, shortened to fit Kubernetes names. */}}
{{- define "enclave.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's name: the release's, unless it already names the chart. */}}
{{- define "enclave.fullname" -}}
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

{{/* Labels on every object of the chart. */}}
{{- define "enclave.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "enclave.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: enclave
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "enclave.selectorLabels" -}}
app.kubernetes.io/name: {{ include "enclave.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's service account. */}}
{{- define "enclave.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "enclave.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, by digest when one is given. */}}
{{- define "enclave.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* How the API server calls the guard: its Service, or a URL (an operator outside the cluster). */}}
{{- define "enclave.webhookClient" -}}
{{- include "enclave.webhookClientAt" (list . "/validate") }}
{{- end }}

{{/* The guard's client configuration at a path: (list $ "/mutate"). */}}
{{- define "enclave.webhookClientAt" -}}
{{- $root := index . 0 }}
{{- $path := index . 1 }}
{{- if $root.Values.webhook.url -}}
url: {{ printf "%s%s" (trimSuffix "/validate" $root.Values.webhook.url) $path | quote }}
{{- else -}}
service:
  namespace: {{ $root.Release.Namespace }}
  name: {{ include "enclave.fullname" $root }}-webhook
  path: {{ $path }}
  port: {{ $root.Values.webhook.port }}
{{- end }}
{{- end }}

{{/* Combinations the schema cannot refuse, refused with the value to change. */}}
{{- define "enclave.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica reconciles" }}
{{- end }}
{{- if ge (int .Values.leaderElection.renewGraceSeconds) (int .Values.leaderElection.leaseDurationSeconds) }}
{{- fail "leaderElection.renewGraceSeconds must be shorter than leaderElection.leaseDurationSeconds" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name is required with serviceAccount.create=false: the guard trusts exactly that account, never the namespace's default" }}
{{- end }}
{{- range .Values.webhook.exemptGroups }}
{{- if has . (list "system:authenticated" "system:unauthenticated" "system:serviceaccounts") }}
{{- fail (printf "webhook.exemptGroups: %s would exempt everyone from the guard; name a break-glass group" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The webhooks' match condition: the operator's service account and the system controllers
acting for admitted objects never reach the guard (operator/src/admission/mod.rs,
SYSTEM_CONTROLLERS). */}}
{{- define "enclave.notTrusted" -}}
{{- $trusted := list (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "enclave.serviceAccountName" .)) }}
{{- range list "generic-garbage-collector" "namespace-controller" "deployment-controller" "replicaset-controller" "statefulset-controller" "job-controller" "cronjob-controller" "ttl-after-finished-controller" "persistent-volume-binder" }}
{{- $trusted = append $trusted (printf "system:serviceaccount:kube-system:%s" .) }}
{{- end }}
{{- $trusted = append $trusted "system:kube-controller-manager" }}
{{- $quoted := list }}
{{- range $trusted }}{{ $quoted = append $quoted (printf "'%s'" .) }}{{ end }}
{{- printf "!(request.userInfo.username in [%s])" (join ", " $quoted) }}
{{- end }}
