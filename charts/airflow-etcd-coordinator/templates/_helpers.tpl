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
