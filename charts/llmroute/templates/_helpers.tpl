{{/*
The app name of the operator's pods. Fixed, not derived from the release: the NetworkPolicy the
operator renders for every gateway proxy admits pods with this name to scrape /metrics
(operator/llmroute/render/labels.py, OPERATOR_APP_NAME).
*/}}
{{- define "llmroute.name" -}}
llmroute-operator
{{- end }}

{{/*
Full name of the chart's objects: the release name when it already says llmroute, else
<release>-llmroute. Truncated to 48 characters, so that with the longest suffix (-test-liveness)
a name stays within the 63 characters of a DNS label.
*/}}
{{- define "llmroute.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else if contains "llmroute" .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-llmroute" .Release.Name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "llmroute.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 48 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of the operator's objects (Deployment, pods, RBAC, Service, peering).
*/}}
{{- define "llmroute.labels" -}}
{{ include "llmroute.selectorLabels" . }}
{{ include "llmroute.commonLabels" . }}
{{- end }}

{{/*
Labels of the chart's other objects (test pod, example route, monitoring). Their name differs
from the operator's, so the operator's selectors never match them.
*/}}
{{- define "llmroute.extraLabels" -}}
app.kubernetes.io/name: llmroute
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "llmroute.commonLabels" . }}
{{- end }}

{{- define "llmroute.commonLabels" -}}
helm.sh/chart: {{ include "llmroute.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmroute
{{- end }}

{{/*
Labels that select the operator's pods. Immutable in a Deployment's selector: never add to them.
*/}}
{{- define "llmroute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmroute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llmroute.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmroute.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The repository of the chart's default image.repository, to which the project publishes no image
yet: NOTES.txt warns while the release uses it (tests/unit/test_chart.py keeps it equal to
values.yaml).
*/}}
{{- define "llmroute.unpublishedRepository" -}}
ghcr.io/llmroute/llmroute
{{- end }}

{{- define "llmroute.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
kopf peering is on with more than one replica: exactly one replica handles events.
*/}}
{{- define "llmroute.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "llmroute.peeringName" -}}
{{- default (include "llmroute.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
The operator's permissions on the namespaced objects it reconciles: the same in the ClusterRole
(cluster-wide) and in each Role (watchNamespaces). No wildcards. Delete only on the children a
spec change can make unwanted (the prunable rows of operator/llmroute/render/children.py);
every other child goes with its route, removed by the garbage collector through its
ownerReferences.
*/}}
{{- define "llmroute.namespacedRules" -}}
# The custom resources: watched, annotated with kopf's progress, status written.
- apiGroups: ["llmroute.dev"]
  resources: ["llmroutes", "modelquotas"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["llmroute.dev"]
  resources: ["llmroutes/status", "modelquotas/status"]
  verbs: ["get", "patch", "update"]
# Children carry ownerReferences with blockOwnerDeletion, which needs update on the owner's
# finalizers subresource.
- apiGroups: ["llmroute.dev"]
  resources: ["llmroutes/finalizers"]
  verbs: ["update"]
# The children of a route, applied (server-side apply) and watched for drift.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
# spec.expose: an Ingress, or a Gateway API HTTPRoute (granted whether or not the Gateway API
# CRDs are installed; a route asking for an HTTPRoute where they are not is told so).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
# Secrets: the referenced provider, caller and master keys are read and watched (a rotated key
# is picked up); the generated master-key and managed-Redis password Secrets are created once
# and never written again.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
# Pruning. A PodDisruptionBudget exists only with several proxy replicas, an HPA only with
# autoscaling, an Ingress or HTTPRoute only with spec.expose, the managed Ollama (StatefulSet,
# headless Service, NetworkPolicy) only with spec.ollama, the managed Redis (the same three
# kinds) only with spec.redis.managed: the operator deletes the ones the spec stops asking for.
# Ollama's volume claims are kept (models are slow to fetch again).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["delete"]
# Proxy and Ollama replicas are found by their pods (status.podIP, readiness): the operator
# scrapes the proxies' /metrics and asks Ollama which models it holds.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# kopf posts events about handler progress and errors on the routes; the operator posts the
# quotas' state changes.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
kopf keeps the peers' heartbeats in the status of the peering object.
*/}}
{{- define "llmroute.peeringVerbs" -}}
verbs: ["get", "list", "watch", "patch"]
{{- end }}
