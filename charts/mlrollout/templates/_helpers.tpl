{{/* Names of the operator's ServiceAccount, RBAC objects, Deployment and PDB. */}}
{{- define "mlrollout.fullname" -}}
{{- .Values.fullnameOverride | default "mlrollout-operator" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespace of every namespaced object. */}}
{{- define "mlrollout.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{/* Labels every object carries: the kustomize base's part-of, plus Helm's bookkeeping labels. */}}
{{- define "mlrollout.labels" -}}
app.kubernetes.io/part-of: mlrollout
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the operator's pods (and its selector's superset). */}}
{{- define "mlrollout.operatorLabels" -}}
app.kubernetes.io/name: mlrollout-operator
app.kubernetes.io/component: operator
{{- end -}}

{{- define "mlrollout.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The namespaced rules (ClusterRole when serving all namespaces, else a Role per namespace). */}}
{{- define "mlrollout.namespacedRules" -}}
# ModelDeployments: watch, finalizer and progress annotations (kopf), status, intents.
- apiGroups: [mlrollout.io]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch, update]
- apiGroups: [mlrollout.io]
  resources: [modeldeployments/status]
  verbs: [get, patch, update]
- apiGroups: [mlrollout.io]
  resources: [modeldeployments/finalizers]
  verbs: [update]
# Serving tracks: one Deployment per version (server-side apply), deleted after promotion/rollback.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, patch, delete]
# The Service in front of both tracks.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, update, patch]
# Pods: crash loops and unschedulable canaries fail a rollout early; after a promotion the
# operator relabels each pod's track in place (no restarts). Never create or delete.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, patch]
# Decisions (gate, step, promote, rollback) are Events on the ModelDeployment.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* The cluster-scoped rules: always in the ClusterRole. */}}
{{- define "mlrollout.clusterRules" -}}
# kopf: peering between replicas (only our peering object, by name; create cannot be limited
# by name, so the init container may create peering objects, which grant nothing) ...
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch, create]
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  resourceNames: [{{ .Values.peering.name }}]
  verbs: [get, patch]
# ... and discovery of resources appearing at run time (read-only). Namespaces are read by kopf
# when the operator runs with --namespace (cluster-wide it does not need them).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end -}}

{{/* A file's text as a YAML block scalar that keeps it byte for byte (its final newline included).
Call with (list $ "files/NAME" INDENT). */}}
{{- define "mlrollout.fileBlock" -}}
{{- $text := (index . 0).Files.Get (index . 1) -}}
{{- $chomp := "|-" -}}
{{- if hasSuffix "\n\n" $text }}{{ $chomp = "|+" }}{{ else if hasSuffix "\n" $text }}{{ $chomp = "|" }}{{ end -}}
{{- $chomp }}{{ $text | trimSuffix "\n" | nindent (index . 2) }}
{{- end -}}
