{{/* Names, labels and paths shared by the templates. */}}

{{- define "coordinator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coordinator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "coordinator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coordinator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: watcher
{{- end -}}

{{- define "coordinator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "coordinator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "coordinator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "coordinator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "coordinator.depsConfigMap" -}}
{{- default (printf "%s-deps" (include "coordinator.fullname" .)) .Values.deps.existingConfigMap -}}
{{- end -}}

{{- define "coordinator.instancesConfigMap" -}}
{{- default (printf "%s-instances" (include "coordinator.fullname" .)) .Values.airflow.existingInstancesConfigMap -}}
{{- end -}}

{{- define "coordinator.hasInstances" -}}
{{- if or .Values.airflow.instances .Values.airflow.existingInstancesConfigMap -}}true{{- end -}}
{{- end -}}

{{- define "coordinator.etcdClusterName" -}}
{{- default (printf "%s-etcd" .Release.Name) .Values.etcdCluster.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The OpenLineage receiver (lineage.*): its own component label, so the watcher's Service, PDB, monitors and
network policy never select its pods, nor its objects the watcher's. */}}
{{- define "coordinator.lineageFullname" -}}
{{- printf "%s-lineage" (include "coordinator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coordinator.lineageSelectorLabels" -}}
app.kubernetes.io/name: {{ include "coordinator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: lineage
{{- end -}}

{{- define "coordinator.lineageLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "coordinator.lineageSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "coordinator.lineageTokensConfigMap" -}}
{{- default (printf "%s-tokens" (include "coordinator.lineageFullname" .)) .Values.lineage.tokens.existingConfigMap -}}
{{- end -}}

{{/* What a release cannot run without. values.schema.json refuses these first; this repeats the check, with what to
set, for an install run with --skip-schema-validation (it would otherwise start pods that can do nothing). */}}
{{- define "coordinator.required" -}}
{{- $missing := list -}}
{{- if not .Values.image.repository -}}
{{- $missing = append $missing "image.repository (the watcher image in your registry)" -}}
{{- end -}}
{{- if not .Values.etcd.endpoints -}}
{{- $missing = append $missing "etcd.endpoints (etcd's client URLs)" -}}
{{- end -}}
{{- if not (or .Values.airflow.url (include "coordinator.hasInstances" .)) -}}
{{- $missing = append $missing "airflow.url or airflow.instances (the Airflow REST API to trigger)" -}}
{{- end -}}
{{- if not (or .Values.deps.content .Values.deps.existingConfigMap) -}}
{{- $missing = append $missing "deps.content (--set-file deps.content=dependencies.json) or deps.existingConfigMap" -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "the release cannot run without: %s" (join "; " $missing)) -}}
{{- end -}}
{{- include "coordinator.etcdTlsAgrees" . -}}
{{- end -}}

{{/* etcd.tls and etcd.endpoints must agree, or the watcher refuses its TLS files (http:// endpoints) or cannot read
them (a Secret or a key missing): said at install, with the value to set, instead of a pod in CrashLoopBackOff. */}}
{{- define "coordinator.etcdTlsAgrees" -}}
{{- $tls := .Values.etcd.tls -}}
{{- if $tls.enabled -}}
{{- $plain := list -}}
{{- range (splitList "," (toString .Values.etcd.endpoints)) -}}
{{- if and (trim .) (not (hasPrefix "https://" (trim .))) -}}
{{- $plain = append $plain (trim .) -}}
{{- end -}}
{{- end -}}
{{- if $plain -}}
{{- fail (printf "etcd.tls.enabled=true but etcd.endpoints has %s without https://: use https:// for every endpoint, or etcd.tls.enabled=false for an etcd without TLS" (join ", " $plain)) -}}
{{- end -}}
{{- if not $tls.existingSecret -}}
{{- fail "etcd.tls.enabled=true needs etcd.tls.existingSecret: the Secret holding etcd's CA (under etcd.tls.caKey) and, for client-certificate auth, the client certificate and key (etcd.tls.certKey, etcd.tls.keyKey)" -}}
{{- end -}}
{{- end -}}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) -}}
{{- fail "etcd.tls.certKey and etcd.tls.keyKey go together (the client certificate and its key, entries of etcd.tls.existingSecret): set both or neither" -}}
{{- end -}}
{{- end -}}

{{/* The references one entry of upstreams, on_failure_of or on_late_of holds, one a line: a dag id, an edge object's
"dag", the members of a condition group ({"any": [...]}, {"all": [...]}, {"at_least": N, "of": [...]}), or a list of
those. */}}
{{- define "coordinator.refs" -}}
{{- if kindIs "string" . -}}
{{- printf "%s\n" . -}}
{{- else if kindIs "slice" . -}}
{{- range . -}}{{- include "coordinator.refs" . -}}{{- end -}}
{{- else if kindIs "map" . -}}
{{- if hasKey . "dag" -}}
{{- include "coordinator.refs" (get . "dag") -}}
{{- else -}}
{{- range $rule := list "any" "all" "of" -}}
{{- if hasKey $ $rule -}}{{- include "coordinator.refs" (get $ $rule) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Airflow instances the graph of deps.content uses, as a JSON list: those holding a DAG (a declared one, or a
root only referenced) or named by an asset route, less those declared "kind": "external". The rule of
coordinator/core/instance_coverage.py (**Instances in use**), with references resolved as the loader resolves them
(docs/dependencies.md): "team/dag" is in team, a bare id in the one instance declaring it, else a root in "default";
the shorthand's DAGs are all in "default". Empty when the chart does not hold the graph (deps.existingConfigMap). */}}
{{- define "coordinator.graphInstances" -}}
{{- $content := .Values.deps.content -}}
{{- $doc := dict -}}
{{- if kindIs "string" $content -}}
{{- $doc = fromJson $content -}}
{{- else if kindIs "map" $content -}}
{{- $doc = $content -}}
{{- end -}}
{{- $used := list -}}
{{- if not (or (hasKey $doc "version") (hasKey $doc "instances") (hasKey $doc "dags")) -}}
{{- if and $doc (not (hasKey $doc "Error")) -}}
{{- $used = list "default" -}}
{{- end -}}
{{- else -}}
{{- $external := list -}}
{{- $declared := $doc.instances | default dict -}}
{{- if kindIs "map" $declared -}}
{{- range $name, $body := $declared -}}
{{- if and (kindIs "map" $body) (eq (toString (get $body "kind")) "external") -}}
{{- $external = append $external $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $dags := $doc.dags | default dict -}}
{{- $ids := dict -}}
{{- $refs := list -}}
{{- if kindIs "map" $dags -}}
{{- range $key, $body := $dags -}}
{{- $parts := splitList "/" $key -}}
{{- $instance := "default" -}}
{{- if gt (len $parts) 1 -}}
{{- $instance = first $parts -}}
{{- else if and (kindIs "map" $body) (hasKey $body "instance") -}}
{{- $instance = toString (get $body "instance") -}}
{{- end -}}
{{- $used = append $used $instance -}}
{{- $id := last $parts -}}
{{- $_ := set $ids $id true -}}
{{- if kindIs "map" $body -}}
{{- range $field := list "upstreams" "on_failure_of" "on_late_of" -}}
{{- if hasKey $body $field -}}
{{- $refs = concat $refs (splitList "\n" (include "coordinator.refs" (get $body $field))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $ref := $refs -}}
{{- if contains "/" $ref -}}
{{- $used = append $used (first (splitList "/" $ref)) -}}
{{- else if and $ref (not (hasKey $ids $ref)) -}}
{{- $used = append $used "default" -}}
{{- end -}}
{{- end -}}
{{- if kindIs "slice" $doc.assets -}}
{{- range $route := $doc.assets -}}
{{- if kindIs "map" $route -}}
{{- if kindIs "string" $route.from -}}{{- $used = append $used $route.from -}}{{- end -}}
{{- if kindIs "string" $route.to -}}{{- $used = append $used $route.to -}}{{- end -}}
{{- if kindIs "slice" $route.to -}}
{{- range $target := $route.to -}}{{- if kindIs "string" $target -}}{{- $used = append $used $target -}}{{- end -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $airflows := list -}}
{{- range $used -}}{{- if not (has . $external) -}}{{- $airflows = append $airflows . -}}{{- end -}}{{- end -}}
{{- $used = $airflows -}}
{{- end -}}
{{- toJson (uniq $used | sortAlpha) -}}
{{- end -}}

{{/* The graph and the Airflows must agree: every instance the graph uses (coordinator.graphInstances) has an entry in
airflow.instances, or is "default" with airflow.url set. The watcher is not ready while one has none
(coordinator/runtime/health.py), so the chart refuses to render it. Where the chart cannot see one side
(deps.existingConfigMap, airflow.existingInstancesConfigMap) it checks nothing: the watcher's readiness does. */}}
{{- define "coordinator.instancesMatch" -}}
{{- if not (or .Values.deps.existingConfigMap .Values.airflow.existingInstancesConfigMap) -}}
{{- $used := include "coordinator.graphInstances" . | fromJsonArray -}}
{{- $entries := keys (.Values.airflow.instances | default dict) | sortAlpha -}}
{{- $configured := $entries -}}
{{- if .Values.airflow.url -}}
{{- $configured = append $configured "default" -}}
{{- end -}}
{{- $missing := list -}}
{{- range $used -}}
{{- if not (has . $configured) -}}
{{- $missing = append $missing . -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- $names := join ", " $missing -}}
{{- $have := list -}}
{{- if $entries -}}
{{- $have = append $have (printf "airflow.instances has %s" (join ", " $entries)) -}}
{{- else -}}
{{- $have = append $have "airflow.instances is empty" -}}
{{- end -}}
{{- if .Values.airflow.url -}}
{{- $have = append $have "airflow.url gives the instance \"default\" only" -}}
{{- end -}}
{{- $fix := printf "add %s to airflow.instances (url and credentials of each)" $names -}}
{{- if and (has "default" $missing) (not .Values.airflow.url) -}}
{{- $fix = printf "%s, or set airflow.url for \"default\"" $fix -}}
{{- end -}}
{{- $others := list -}}
{{- range $configured -}}{{- if not (has . $missing) -}}{{- $others = append $others . -}}{{- end -}}{{- end -}}
{{- if $others -}}
{{- $fix = printf "%s; or, if those DAGs run in %s, name that instance in dependencies.json (\"%s/DAG_ID\")" $fix (join " or " $others) (first $others) -}}
{{- end -}}
{{- fail (printf "the graph and the Airflows disagree: deps.content has DAGs in instance(s) %s, but no Airflow is configured for them (%s). Fix: %s; an instance with no Airflow is declared \"kind\": \"external\" under \"instances\" in dependencies.json" $names (join "; " $have) $fix) -}}
{{- end -}}
{{- end -}}
{{- end -}}
