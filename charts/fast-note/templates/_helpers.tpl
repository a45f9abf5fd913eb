{{/* Chart name, cut to 63 characters (a DNS label). */}}
{{- define "fast-note.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: <release>-<chart> unless the release name already contains the chart name. */}}
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

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "fast-note.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: name and instance only (selectors are immutable). */}}
{{- define "fast-note.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fast-note.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of the app pods: name, instance and component app, so migration and test pods never join the Service. */}}
{{- define "fast-note.appSelectorLabels" -}}
{{ include "fast-note.selectorLabels" . }}
app.kubernetes.io/component: app
{{- end -}}

{{/* Common labels of every resource: selector labels, version, managed-by, chart and commonLabels. */}}
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

{{/* An image reference from (dict "image" .Values.image "root" $): repository, then @digest or :tag (default appVersion). */}}
{{- define "fast-note.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The app image reference. */}}
{{- define "fast-note.image" -}}
{{- include "fast-note.imageRef" (dict "image" .Values.image "root" .) -}}
{{- end -}}

{{/* The migrator image reference. */}}
{{- define "fast-note.migrator.image" -}}
{{- include "fast-note.imageRef" (dict "image" .Values.migration.image "root" .) -}}
{{- end -}}

{{/* ServiceAccount of the app pods (and of the init containers and the test Pod). */}}
{{- define "fast-note.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fast-note.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount of the migration Jobs. */}}
{{- define "fast-note.migration.serviceAccountName" -}}
{{- if .Values.migration.serviceAccount.create -}}
{{- default (include "fast-note.componentName" (dict "root" . "suffix" "migration")) .Values.migration.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.migration.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the ConfigMap the app loads with envFrom. */}}
{{- define "fast-note.configMapName" -}}
{{- default (include "fast-note.componentName" (dict "root" . "suffix" "config")) .Values.config.existingConfigMap -}}
{{- end -}}

{{/* True ("true") when the chart has a database URL to hand out (url or existingSecret). */}}
{{- define "fast-note.database.configured" -}}
{{- if or .Values.database.url .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the database URL for the release's own resources. */}}
{{- define "fast-note.database.secretName" -}}
{{- default (include "fast-note.componentName" (dict "root" . "suffix" "db")) .Values.database.existingSecret -}}
{{- end -}}

{{/* Key of the database URL in that Secret. */}}
{{- define "fast-note.database.secretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}database-url{{- end -}}
{{- end -}}

{{/* Name of the hook-only copy of the database Secret (strategy hook with database.url): it must exist before the pre-install hook runs. */}}
{{- define "fast-note.database.hookSecretName" -}}
{{- include "fast-note.componentName" (dict "root" . "suffix" "migration-db") -}}
{{- end -}}

{{/* True when the migration Job is a hook (a Helm hook, or an Argo CD PreSync hook): what it uses must then be a hook too. */}}
{{- define "fast-note.migration.jobIsHook" -}}
{{- if or (eq .Values.migration.strategy "hook") .Values.migration.argocd -}}true{{- end -}}
{{- end -}}

{{/* True when the migration hook Jobs read the database URL from the hook-only Secret copy (database.url set, Job is a hook). */}}
{{- define "fast-note.database.useHookSecret" -}}
{{- if and (include "fast-note.migration.jobIsHook" .) .Values.database.url (not .Values.database.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* Secret name the migration Jobs read DATABASE_URL from. */}}
{{- define "fast-note.migration.secretName" -}}
{{- if include "fast-note.database.useHookSecret" . -}}
{{- include "fast-note.database.hookSecretName" . -}}
{{- else -}}
{{- include "fast-note.database.secretName" . -}}
{{- end -}}
{{- end -}}

{{/* Helm hook events of the migration Secret copy: every event a migration hook Job runs on (the contract Job reads it too). */}}
{{- define "fast-note.migration.hookEvents" -}}
{{- if .Values.migration.contract.enabled -}}pre-install,pre-upgrade,post-install,post-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end -}}

{{/* Weight of the migration support hooks: 5 below the lowest migration Job weight. */}}
{{- define "fast-note.migration.supportWeight" -}}
{{- $w := int .Values.migration.hook.weight -}}
{{- if and .Values.migration.contract.enabled (lt (int .Values.migration.contract.weight) $w) -}}
{{- $w = int .Values.migration.contract.weight -}}
{{- end -}}
{{- sub $w 5 -}}
{{- end -}}

{{/* Annotations that make a migration support object a hook when the migration Job is one (empty otherwise): (dict "root" $ "events" "pre-install,pre-upgrade"); events default to hookEvents. */}}
{{- define "fast-note.migration.supportHookAnnotations" -}}
{{- $events := .events | default (include "fast-note.migration.hookEvents" .root) -}}
{{- with .root }}
{{- if eq .Values.migration.strategy "hook" }}
helm.sh/hook: {{ $events }}
helm.sh/hook-weight: {{ include "fast-note.migration.supportWeight" . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
{{- if .Values.migration.argocd }}
argocd.argoproj.io/hook: PreSync
argocd.argoproj.io/hook-delete-policy: BeforeHookCreation
argocd.argoproj.io/sync-wave: {{ include "fast-note.migration.supportWeight" . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Argo CD hook annotations of a migration Job: (dict "root" $ "phase" "PreSync" "weight" 0); empty unless migration.argocd. */}}
{{- define "fast-note.migration.argocdAnnotations" -}}
{{- if .root.Values.migration.argocd }}
argocd.argoproj.io/hook: {{ .phase }}
argocd.argoproj.io/hook-delete-policy: BeforeHookCreation
argocd.argoproj.io/sync-wave: {{ .weight | quote }}
{{- end }}
{{- end -}}

{{/* Arguments of `fast-note-migrate deploy` from the migration settings: (dict "root" $ "phase" "all"); --phase only when not all (the migrator's default). */}}
{{- define "fast-note.migration.deployArgs" -}}
{{- $m := .root.Values.migration -}}
- deploy
- --lock-timeout
- {{ $m.lockTimeout | quote }}
- --connect-timeout
- {{ $m.connectTimeout | quote }}
{{- if ne .phase "all" }}
- --phase
- {{ .phase | quote }}
{{- end }}
{{- with $m.lintPolicy }}
- --lint-policy
- {{ . | quote }}
{{- end }}
- --statement-lock-timeout
- {{ $m.statementLockTimeout | quote }}
- --statement-timeout
- {{ $m.statementTimeout | quote }}
- --lock-retries
- {{ $m.lockRetries | quote }}
{{- end -}}

{{/* Arguments the contract run adds to deployArgs: wait for the app Deployment's rollout (in the release namespace) before applying. */}}
{{- define "fast-note.migration.contractArgs" -}}
- --wait-for-rollout
- {{ include "fast-note.fullname" . | quote }}
- --namespace
- {{ .Release.Namespace | quote }}
- --rollout-timeout
- {{ .Values.migration.contract.rolloutTimeout | quote }}
{{- end -}}

{{/* ServiceAccount of the contract Job: the only one in the chart with an API token (read-only RBAC to watch the rollout). */}}
{{- define "fast-note.migration.contractServiceAccountName" -}}
{{- include "fast-note.componentName" (dict "root" . "suffix" "migrate-contract") -}}
{{- end -}}

{{/* Annotations of the contract Job's ServiceAccount, Role and RoleBinding: post-install/post-upgrade hooks 5 below the contract Job's weight. */}}
{{- define "fast-note.migration.contractSupportAnnotations" -}}
{{- $w := sub (int .Values.migration.contract.weight) 5 -}}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: {{ $w | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- include "fast-note.migration.argocdAnnotations" (dict "root" . "phase" "PostSync" "weight" $w) }}
{{- end -}}

{{/* A duration value (500ms, 30s, 5m, 1h, or 0) in whole seconds, rounded up. */}}
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

{{/* Phase the pre-deploy migration runs: expand when a contract hook follows, all otherwise. */}}
{{- define "fast-note.migration.prePhase" -}}
{{- if and (eq .Values.migration.strategy "hook") .Values.migration.contract.enabled -}}expand{{- else -}}all{{- end -}}
{{- end -}}

{{/* Arguments of `fast-note-migrate wait`. */}}
{{- define "fast-note.migration.waitArgs" -}}
- wait
- --timeout
- {{ .Values.migration.wait.timeout | quote }}
- --connect-timeout
- {{ .Values.migration.connectTimeout | quote }}
{{- end -}}

{{/* True when the app pods run the wait init container. */}}
{{- define "fast-note.migration.waitInPods" -}}
{{- if and (has .Values.migration.strategy (list "hook" "job")) .Values.migration.wait.enabled -}}true{{- end -}}
{{- end -}}

{{/* API version of the HorizontalPodAutoscaler: autoscaling/v2 (1.23+), autoscaling/v2beta2 on older clusters; from the cluster's API list, else from its version. */}}
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

{{/* API version of the PodDisruptionBudget: policy/v1 (1.21+), policy/v1beta1 on older clusters; from the cluster's API list, else from its version. */}}
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

{{/* Helm ownership annotations, rendered on what the manual procedure applies with kubectl before the release exists (plain Job, its ServiceAccount, the values Secret) so Helm adopts those objects later. */}}
{{- define "fast-note.adoptionAnnotations" -}}
meta.helm.sh/release-name: {{ .Release.Name }}
meta.helm.sh/release-namespace: {{ .Release.Namespace }}
{{- end -}}
