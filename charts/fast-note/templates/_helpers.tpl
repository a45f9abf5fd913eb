{{/*
Names, labels and image references every object uses, and the API versions of the optional
objects. The database and migration helpers are in migration/_helpers.tpl, the pod fragments in
_pod.tpl, the value checks in _validate.tpl.
*/}}

{{/* Chart name, cut to 63 characters (a DNS label). Argument: $. */}}
{{- define "fast-note.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: <release>-<chart> unless the release name already contains the chart name. Argument: $. */}}
{{- define "fast-note.fullname" -}}
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

{{/* A name derived from the fullname: (dict "root" $ "suffix" "migration"), the prefix cut so the whole fits 63 characters. */}}
{{- define "fast-note.componentName" -}}
{{- $suffix := .suffix -}}
{{- $prefix := include "fast-note.fullname" .root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $prefix $suffix -}}
{{- end -}}

{{/* Chart name and version for the helm.sh/chart label. Argument: $. */}}
{{- define "fast-note.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: name and instance only (selectors are immutable). Argument: $. */}}
{{- define "fast-note.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fast-note.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of the app pods: name, instance and component app, so migration and test pods never join the Service. Argument: $. */}}
{{- define "fast-note.appSelectorLabels" -}}
{{ include "fast-note.selectorLabels" . }}
app.kubernetes.io/component: app
{{- end -}}

{{/* Common labels of every resource: selector labels, version, managed-by, chart and commonLabels. Argument: $. */}}
{{- define "fast-note.labels" -}}
helm.sh/chart: {{ include "fast-note.chart" . }}
{{ include "fast-note.selectorLabels" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/part-of: fast-note
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Common labels plus a component: (dict "root" $ "component" "migration"). */}}
{{- define "fast-note.componentLabels" -}}
{{ include "fast-note.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference from (dict "image" .Values.image "root" $): [registry/]repository, then @digest or :tag (default appVersion); global.imageRegistry wins over the image's registry, as in Bitnami charts. */}}
{{- define "fast-note.imageRef" -}}
{{- $global := default (dict) .root.Values.global -}}
{{- $registry := default .image.registry $global.imageRegistry | trimSuffix "/" -}}
{{- $repository := .image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" $registry $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The app image reference. Argument: $. */}}
{{- define "fast-note.image" -}}
{{- include "fast-note.imageRef" (dict "image" .Values.image "root" .) -}}
{{- end -}}

{{/* ServiceAccount of the app pods (and of the init containers and the test Pod). Argument: $. */}}
{{- define "fast-note.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fast-note.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the ConfigMap the app loads with envFrom. Argument: $. */}}
{{- define "fast-note.configMapName" -}}
{{- default (include "fast-note.componentName" (dict "root" . "suffix" "config")) .Values.config.existingConfigMap -}}
{{- end -}}

{{/* A duration value (500ms, 30s, 5m, 1h, or 0) in whole seconds, rounded up. Argument: the duration. */}}
{{- define "fast-note.durationSeconds" -}}
{{- $d := toString . -}}
{{- $n := regexFind "^[0-9]+" $d | int -}}
{{- $unit := trimPrefix (regexFind "^[0-9]+" $d) $d -}}
{{- if eq $unit "ms" -}}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "m" -}}{{ mul $n 60 }}
{{- else if eq $unit "h" -}}{{ mul $n 3600 }}
{{- else -}}{{ $n }}
{{- end -}}
{{- end -}}

{{/* The Helm --timeout (and Flux spec.timeout) that outlasts one migration Job: activeDeadlineSeconds plus a minute, in whole minutes (e.g. 16m for 900). Argument: $. */}}
{{- define "fast-note.helmTimeout" -}}
{{- printf "%dm" (div (add (int .Values.migration.job.activeDeadlineSeconds) 60 59) 60) -}}
{{- end -}}

{{/* API version of the HorizontalPodAutoscaler: autoscaling/v2 (1.23+), autoscaling/v2beta2 on older clusters; from the cluster's API list, else from its version. Argument: $. */}}
{{- define "fast-note.hpa.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "autoscaling/v2/HorizontalPodAutoscaler" -}}
autoscaling/v2
{{- else if .Capabilities.APIVersions.Has "autoscaling/v2beta2/HorizontalPodAutoscaler" -}}
autoscaling/v2beta2
{{- else if semverCompare ">=1.23-0" .Capabilities.KubeVersion.Version -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end -}}

{{/* API version of the PodDisruptionBudget: policy/v1 (1.21+), policy/v1beta1 on older clusters; from the cluster's API list, else from its version. Argument: $. */}}
{{- define "fast-note.pdb.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" -}}
policy/v1
{{- else if .Capabilities.APIVersions.Has "policy/v1beta1/PodDisruptionBudget" -}}
policy/v1beta1
{{- else if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/* metadata.annotations of an object, or nothing when empty: (dict "root" $ "annotations" (dict ...)); the object's own annotations win over commonAnnotations. */}}
{{- define "fast-note.annotations" -}}
{{- $merged := merge (deepCopy (default (dict) .annotations)) (deepCopy (default (dict) .root.Values.commonAnnotations)) -}}
{{- with $merged }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Labels of a pod template (YAML): (dict "root" $ "selector" "<selector labels YAML>" "extra" (dict ...)); the selector labels win over the extra pod labels, which win over commonLabels. */}}
{{- define "fast-note.podLabels" -}}
{{- $labels := merge (fromYaml .selector) (deepCopy (default (dict) .extra)) (deepCopy (default (dict) .root.Values.commonLabels)) -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* Env vars (a list) without those whose names the user's list sets: (dict "env" (list ...) "extra" (list ...)); the user's extraEnv wins, nothing is rendered twice. */}}
{{- define "fast-note.envWithout" -}}
{{- $taken := list -}}
{{- range .extra }}{{ $taken = append $taken .name }}{{ end -}}
{{- $out := list -}}
{{- range .env }}{{ if not (has .name $taken) }}{{ $out = append $out . }}{{ end }}{{ end -}}
{{- concat $out (default (list) .extra) | toYaml -}}
{{- end -}}

{{/* Helm ownership annotations, rendered on what the manual procedure applies with kubectl before the release exists (plain Job, its ServiceAccount, the values Secret) so Helm adopts those objects later. Argument: $. */}}
{{- define "fast-note.adoptionAnnotations" -}}
meta.helm.sh/release-name: {{ .Release.Name }}
meta.helm.sh/release-namespace: {{ .Release.Namespace }}
{{- end -}}
