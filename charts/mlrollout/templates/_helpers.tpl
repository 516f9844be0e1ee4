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

{{/* The operator's rules, read from manifests/base/rbac.yaml (files/rbac.yaml, one source with the
kustomize base and operator/RBAC.md), as JSON {"all": [...], "cluster": [...], "namespaced": [...]}: all in their order there, the rules on
cluster-scoped resources (CRDs, namespaces, the ClusterKopfPeering, whose name is peering.name)
and the rest. */}}
{{- define "mlrollout.rules" -}}
{{- $clusterScoped := list "customresourcedefinitions" "namespaces" "clusterkopfpeerings" -}}
{{- $found := false -}}
{{- $cluster := list -}}
{{- $namespaced := list -}}
{{- $all := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" (.Files.Get "files/rbac.yaml") -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if eq ($obj.kind | default "") "ClusterRole" -}}
{{- $found = true -}}
{{- range $rule := $obj.rules -}}
{{- $scoped := 0 -}}
{{- range $rule.resources }}{{ if has . $clusterScoped }}{{ $scoped = add1 $scoped }}{{ end }}{{ end -}}
{{- if and $scoped (ne (int $scoped) (len $rule.resources)) -}}
{{- fail (printf "manifests/base/rbac.yaml: a rule mixes cluster-scoped and namespaced resources: %v" $rule.resources) -}}
{{- end -}}
{{- if $rule.resourceNames }}{{ if has "clusterkopfpeerings" $rule.resources -}}
{{- $_ := set $rule "resourceNames" (list $.Values.peering.name) -}}
{{- end }}{{ end -}}
{{- $all = append $all $rule -}}
{{- if $scoped }}{{ $cluster = append $cluster $rule }}{{ else }}{{ $namespaced = append $namespaced $rule }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $found }}{{ fail "files/rbac.yaml (manifests/base/rbac.yaml) has no ClusterRole" }}{{ end -}}
{{- toJson (dict "all" $all "cluster" $cluster "namespaced" $namespaced) -}}
{{- end -}}

{{/* A file's text as a YAML block scalar that keeps it byte for byte (its final newline included).
Call with (list $ "files/NAME" INDENT). */}}
{{- define "mlrollout.fileBlock" -}}
{{- $text := (index . 0).Files.Get (index . 1) -}}
{{- $chomp := "|-" -}}
{{- if hasSuffix "\n\n" $text }}{{ $chomp = "|+" }}{{ else if hasSuffix "\n" $text }}{{ $chomp = "|" }}{{ end -}}
{{- $chomp }}{{ $text | trimSuffix "\n" | nindent (index . 2) }}
{{- end -}}
