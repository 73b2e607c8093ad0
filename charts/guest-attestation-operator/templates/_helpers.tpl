{{/* Name of the chart, overridable. */}}
{{- define "gao.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-based, at most 63 characters. */}}
{{- define "gao.fullname" -}}
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

{{/* Name of cluster-scoped objects: unique per release namespace. */}}
{{- define "gao.clusterName" -}}
{{- printf "%s-%s" (include "gao.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "gao.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "gao.labels" -}}
helm.sh/chart: {{ include "gao.chart" . }}
{{ include "gao.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: guest-attestation-operator
{{- end }}

{{- define "gao.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gao.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gao.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gao.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gao.leaseName" -}}
{{- default (include "gao.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "gao.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules on our own kinds and what they read, for a ClusterRole (all namespaces) or a Role (each
watched namespace). No wildcards. Secrets: get only (credentialsRef, policy signing keys and
certificates are read by name); never list or watch.
*/}}
{{- define "gao.rules" -}}
# The three kinds: watch them, manage finalizers (patch/update), write status.
- apiGroups: ["guestattestation.dev"]
  resources: ["attestationproviders", "guestattestationextensions", "attestationstatuses"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["guestattestation.dev"]
  resources: ["attestationproviders/status", "guestattestationextensions/status", "attestationstatuses/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion need update on the owner's finalizers subresource.
- apiGroups: ["guestattestation.dev"]
  resources: ["attestationproviders/finalizers", "guestattestationextensions/finalizers", "attestationstatuses/finalizers"]
  verbs: ["update"]
# GuestAttestationExtension creates its AttestationStatus (createStatus; a server-side apply that
# creates is authorized as create) and deletes it when createStatus is turned off.
- apiGroups: ["guestattestation.dev"]
  resources: ["attestationstatuses"]
  verbs: ["create", "delete"]
# AttestationProvider policies from ConfigMaps (spec.policy.configMapRef), watched for changes.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
# credentialsRef and signing material, read by name only.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events about our objects.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
