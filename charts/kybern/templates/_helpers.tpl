{{/* Names, labels and values shared by the templates. */}}

{{- define "kybern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name; the release name alone when it already names the chart. */}}
{{- define "kybern.fullname" -}}
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

{{- define "kybern.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. Call with (dict "ctx" $ "component" "admission"). */}}
{{- define "kybern.labels" -}}
helm.sh/chart: {{ include "kybern.chart" .ctx }}
{{ include "kybern.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "kybern.fullname" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/* Labels that select a component's Pods; they never change across upgrades. */}}
{{- define "kybern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kybern.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* `kyverno` in compat mode, else `kybern`: the binary's --names. */}}
{{- define "kybern.names" -}}
{{- if .Values.compat.kyvernoNames }}kyverno{{ else }}kybern{{ end }}
{{- end }}

{{- define "kybern.admission.name" -}}
{{- printf "%s-admission" (include "kybern.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kybern.background.name" -}}
{{- printf "%s-background" (include "kybern.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kybern.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kybern.admission.name" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kybern.background.serviceAccountName" -}}
{{- $sa := .Values.backgroundController.serviceAccount }}
{{- if $sa.create }}
{{- default (include "kybern.background.name" .) $sa.name }}
{{- else }}
{{- required "backgroundController.serviceAccount.name is required when backgroundController.serviceAccount.create is false" $sa.name }}
{{- end }}
{{- end }}

{{/* The webhook Service; its name is also in the webhook clientConfig and the certificate SANs. */}}
{{- define "kybern.serviceName" -}}
{{- default (printf "%s-svc" (include "kybern.names" .)) .Values.service.name }}
{{- end }}

{{- define "kybern.configMapName" -}}
{{- default (include "kybern.names" .) .Values.config.name }}
{{- end }}

{{/* The Secret passed as --tls-secret; empty when kybern manages its own certificates. */}}
{{- define "kybern.tlsSecretName" -}}
{{- if .Values.certificates.tlsSecret }}
{{- .Values.certificates.tlsSecret }}
{{- else if .Values.certificates.certManager.enabled }}
{{- printf "%s-admission-tls" (include "kybern.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kybern.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespaces the webhooks skip: the values' list plus the release namespace, without repeats. */}}
{{- define "kybern.excludeNamespaces" -}}
{{- append (.Values.excludeNamespaces | default list) .Release.Namespace | uniq | join "," }}
{{- end }}

{{/* Label a ClusterRole carries to add its rules to the admission role. */}}
{{- define "kybern.aggregateLabel" -}}
rbac.kybern.io/aggregate-to-admission
{{- end }}

{{/* Label a ClusterRole carries to add its rules to the background controller's role. */}}
{{- define "kybern.background.aggregateLabel" -}}
rbac.kybern.io/aggregate-to-background
{{- end }}

{{/* Policy kinds, as plural resources; both controllers read them, admission writes their status. */}}
{{- define "kybern.kyvernoPolicyKinds" -}}
clusterpolicies,policies,clustercleanuppolicies,cleanuppolicies,globalcontextentries
{{- end }}

{{- define "kybern.policiesPolicyKinds" -}}
validatingpolicies,namespacedvalidatingpolicies,mutatingpolicies,namespacedmutatingpolicies,generatingpolicies,namespacedgeneratingpolicies,deletingpolicies,namespaceddeletingpolicies,imagevalidatingpolicies,namespacedimagevalidatingpolicies
{{- end }}

{{/* Read access to every policy kind, the PolicyExceptions and the admission policies: the
     policy cache of both the admission server and the background controller. */}}
{{- define "kybern.policyReadRules" -}}
- apiGroups: [kyverno.io]
  resources:
    {{- range splitList "," (include "kybern.kyvernoPolicyKinds" .) }}
    - {{ . }}
    {{- end }}
    - policyexceptions
  verbs: [get, list, watch]
- apiGroups: [policies.kyverno.io]
  resources:
    {{- range splitList "," (include "kybern.policiesPolicyKinds" .) }}
    - {{ . }}
    {{- end }}
    - policyexceptions
  verbs: [get, list, watch]
# ValidatingAdmissionPolicies and MutatingAdmissionPolicies are evaluated too.
- apiGroups: [admissionregistration.k8s.io]
  resources:
    - validatingadmissionpolicies
    - validatingadmissionpolicybindings
    - mutatingadmissionpolicies
    - mutatingadmissionpolicybindings
  verbs: [get, list, watch]
{{- end }}

{{/* Restricted securityContexts shared by the hook Pods. */}}
{{- define "kybern.hookPodSpecCommon" -}}
restartPolicy: Never
serviceAccountName: {{ include "kybern.fullname" . }}-hooks
automountServiceAccountToken: true
securityContext:
  {{- toYaml .Values.admissionController.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* "true" when admission writes its results into reports. */}}
{{- define "kybern.admissionReports" -}}
{{- if and .Values.backgroundController.reports.enabled .Values.admissionController.reports.enabled -}}
true
{{- end -}}
{{- end -}}
