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
