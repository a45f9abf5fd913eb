{{/*
Helpers of the database settings and of the migration objects (hook, plain and contract Jobs, their
ServiceAccounts, Role, RoleBinding and Secret copy). The names, labels and image helpers every
object uses are in ../_helpers.tpl, the pod fragments shared with the Deployment and the test Pod
in ../_pod.tpl.
*/}}

{{/* True ("true") when the chart has a database URL to hand out (url or existingSecret). Argument: $. */}}
{{- define "fast-note.database.configured" -}}
{{- if or .Values.database.url .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the database URL for the release's own resources. Argument: $. */}}
{{- define "fast-note.database.secretName" -}}
{{- default (include "fast-note.componentName" (dict "root" . "suffix" "db")) .Values.database.existingSecret -}}
{{- end -}}

{{/* Key of the database URL in that Secret. Argument: $. */}}
{{- define "fast-note.database.secretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}database-url{{- end -}}
{{- end -}}

{{/* True ("true") when the migration URL comes from values (migration.database.url, or database.url not overridden by a migration Secret): the chart stores it. Argument: $. */}}
{{- define "fast-note.migration.database.fromValues" -}}
{{- $m := .Values.migration.database -}}
{{- if or $m.url (and .Values.database.url (not $m.existingSecret) (not $m.existingSecretKey)) -}}true{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the migration role's URL for the release's own resources (plain Job, migrate init container): migration.database.existingSecret, the chart's Secret for migration.database.url, else the app's. Argument: $. */}}
{{- define "fast-note.migration.database.secretName" -}}
{{- $m := .Values.migration.database -}}
{{- if $m.existingSecret -}}
{{- $m.existingSecret -}}
{{- else if $m.url -}}
{{- include "fast-note.componentName" (dict "root" . "suffix" "db") -}}
{{- else -}}
{{- include "fast-note.database.secretName" . -}}
{{- end -}}
{{- end -}}

{{/* Key of the migration role's URL in that Secret. Argument: $. */}}
{{- define "fast-note.migration.database.secretKey" -}}
{{- $m := .Values.migration.database -}}
{{- if $m.existingSecret -}}
{{- default .Values.database.existingSecretKey $m.existingSecretKey -}}
{{- else if $m.url -}}
migration-database-url
{{- else if $m.existingSecretKey -}}
{{- $m.existingSecretKey -}}
{{- else -}}
{{- include "fast-note.database.secretKey" . -}}
{{- end -}}
{{- end -}}

{{/* Name of the hook-only copy of the database Secret (strategy hook with database.url): it must exist before the pre-install hook runs. Argument: $. */}}
{{- define "fast-note.database.hookSecretName" -}}
{{- include "fast-note.componentName" (dict "root" . "suffix" "migration-db") -}}
{{- end -}}

{{/* True when the migration hook Jobs read the migration URL from the hook-only Secret copy (the URL comes from values, Job is a hook). Argument: $. */}}
{{- define "fast-note.database.useHookSecret" -}}
{{- if and (include "fast-note.migration.jobIsHook" .) (include "fast-note.migration.database.fromValues" .) -}}true{{- end -}}
{{- end -}}

{{/* The migrator image reference. Argument: $. */}}
{{- define "fast-note.migrator.image" -}}
{{- include "fast-note.imageRef" (dict "image" .Values.migration.image "root" .) -}}
{{- end -}}

{{/* ServiceAccount of the migration Jobs. Argument: $. */}}
{{- define "fast-note.migration.serviceAccountName" -}}
{{- if .Values.migration.serviceAccount.create -}}
{{- default (include "fast-note.componentName" (dict "root" . "suffix" "migration")) .Values.migration.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.migration.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* True when the migration Job is a hook (a Helm hook, or an Argo CD PreSync hook): what it uses must then be a hook too. Argument: $. */}}
{{- define "fast-note.migration.jobIsHook" -}}
{{- if or (eq .Values.migration.strategy "hook") (and .Values.migration.argocd (eq .Values.migration.strategy "job")) -}}true{{- end -}}
{{- end -}}

{{/* Secret name the migration Jobs read DATABASE_URL from. Argument: $. */}}
{{- define "fast-note.migration.secretName" -}}
{{- if include "fast-note.database.useHookSecret" . -}}
{{- include "fast-note.database.hookSecretName" . -}}
{{- else -}}
{{- include "fast-note.migration.database.secretName" . -}}
{{- end -}}
{{- end -}}

{{/* Key of DATABASE_URL in that Secret (the hook copy always uses database-url). Argument: $. */}}
{{- define "fast-note.migration.secretKey" -}}
{{- if include "fast-note.database.useHookSecret" . -}}
database-url
{{- else -}}
{{- include "fast-note.migration.database.secretKey" . -}}
{{- end -}}
{{- end -}}

{{/* Hook annotations as YAML, built as a dict (empty when none apply): (dict "root" $ "events" "pre-install,pre-upgrade" "weight" 0 "argocdPhase" "PreSync" "logs" true); Helm's when events is set (logs: Helm prints the pod logs), Argo CD's (hook phase, sync wave = weight) when argocdPhase is set and migration.argocd is true. */}}
{{- define "fast-note.migration.hookAnnotations" -}}
{{- $annotations := dict -}}
{{- $weight := toString .weight -}}
{{- if .events -}}
{{- $_ := set $annotations "helm.sh/hook" .events -}}
{{- $_ := set $annotations "helm.sh/hook-weight" $weight -}}
{{- $_ := set $annotations "helm.sh/hook-delete-policy" "before-hook-creation,hook-succeeded" -}}
{{- if .logs -}}
{{- /* Helm 3.18+ and 4 print the Job's pod logs (every attempt) before deleting anything. */ -}}
{{- $_ := set $annotations "helm.sh/hook-output-log-policy" "hook-succeeded,hook-failed" -}}
{{- end -}}
{{- end -}}
{{- if and .argocdPhase .root.Values.migration.argocd -}}
{{- $_ := set $annotations "argocd.argoproj.io/hook" .argocdPhase -}}
{{- $_ := set $annotations "argocd.argoproj.io/hook-delete-policy" "BeforeHookCreation" -}}
{{- $_ := set $annotations "argocd.argoproj.io/sync-wave" $weight -}}
{{- end -}}
{{- with $annotations }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* Helm hook events of the migration Secret copy: every event a migration hook Job runs on (the contract Job reads it too). Argument: $. */}}
{{- define "fast-note.migration.hookEvents" -}}
{{- if .Values.migration.contract.enabled -}}pre-install,pre-upgrade,post-install,post-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end -}}

{{/* Weight of the migration support hooks: 5 below the lowest migration Job weight. Argument: $. */}}
{{- define "fast-note.migration.supportWeight" -}}
{{- $w := int .Values.migration.hook.weight -}}
{{- if and .Values.migration.contract.enabled (lt (int .Values.migration.contract.weight) $w) -}}
{{- $w = int .Values.migration.contract.weight -}}
{{- end -}}
{{- sub $w 5 -}}
{{- end -}}

{{/* Annotations (YAML) that make a migration support object a hook when the migration Job is one (empty otherwise): (dict "root" $ "events" "pre-install,pre-upgrade"); events default to hookEvents. */}}
{{- define "fast-note.migration.supportHookAnnotations" -}}
{{- $root := .root -}}
{{- $events := "" -}}
{{- if eq $root.Values.migration.strategy "hook" -}}
{{- $events = .events | default (include "fast-note.migration.hookEvents" $root) -}}
{{- end -}}
{{- include "fast-note.migration.hookAnnotations" (dict "root" $root "events" $events "weight" (include "fast-note.migration.supportWeight" $root) "argocdPhase" "PreSync") -}}
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

{{/* Phase the pre-deploy migration runs: expand when a contract hook follows, all otherwise. Argument: $. */}}
{{- define "fast-note.migration.prePhase" -}}
{{- if include "fast-note.migration.contractEnabled" . -}}expand{{- else -}}all{{- end -}}
{{- end -}}

{{/* Arguments of `fast-note-migrate wait`. Argument: $. */}}
{{- define "fast-note.migration.waitArgs" -}}
- wait
- --timeout
- {{ .Values.migration.wait.timeout | quote }}
- --connect-timeout
- {{ .Values.migration.connectTimeout | quote }}
{{- end -}}

{{/* True when the app pods run the wait init container. Argument: $. */}}
{{- define "fast-note.migration.waitInPods" -}}
{{- if and (has .Values.migration.strategy (list "hook" "job")) .Values.migration.wait.enabled -}}true{{- end -}}
{{- end -}}

{{/* True when the contract phase runs as its own post-install/post-upgrade hook Job (strategy hook, migration.contract.enabled). Argument: $. */}}
{{- define "fast-note.migration.contractEnabled" -}}
{{- if and (eq .Values.migration.strategy "hook") .Values.migration.contract.enabled -}}true{{- end -}}
{{- end -}}

{{/* Arguments the contract run adds to deployArgs: wait for the app Deployment's rollout (in the release namespace) before applying. Argument: $. */}}
{{- define "fast-note.migration.contractArgs" -}}
- --wait-for-rollout
- {{ include "fast-note.fullname" . | quote }}
- --namespace
- {{ .Release.Namespace | quote }}
- --rollout-timeout
- {{ .Values.migration.contract.rolloutTimeout | quote }}
{{- end -}}

{{/* ServiceAccount of the contract Job: the only one in the chart with an API token (read-only RBAC to watch the rollout). Argument: $. */}}
{{- define "fast-note.migration.contractServiceAccountName" -}}
{{- include "fast-note.componentName" (dict "root" . "suffix" "migrate-contract") -}}
{{- end -}}

{{/* Annotations (YAML) of the contract Job's ServiceAccount, Role and RoleBinding: post-install/post-upgrade hooks 5 below the contract Job's weight. Argument: $. */}}
{{- define "fast-note.migration.contractSupportAnnotations" -}}
{{- include "fast-note.migration.hookAnnotations" (dict "root" . "events" "post-install,post-upgrade" "weight" (sub (int .Values.migration.contract.weight) 5) "argocdPhase" "PostSync") -}}
{{- end -}}


{{/* Spec of a migration Job: (dict "root" $ "name" "migrate" "args" (list ...) "component" "migration" "serviceAccountName" "..." "apiToken" false "podLabels" (dict ...)); the ServiceAccount defaults to the migration one; podLabels go on top of migration.podLabels. */}}
{{- define "fast-note.migration.jobSpec" -}}
{{- $root := .root -}}
{{- $job := $root.Values.migration.job -}}
backoffLimit: {{ $job.backoffLimit }}
activeDeadlineSeconds: {{ $job.activeDeadlineSeconds }}
{{- if not (kindIs "invalid" $job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ $job.ttlSecondsAfterFinished }}
{{- end }}
{{- if semverCompare ">=1.26-0" $root.Capabilities.KubeVersion.Version }}
podFailurePolicy:
  rules:
    {{- /* Usage error, failed migration blocking the history, drift: a retry cannot help. */}}
    - action: FailJob
      onExitCodes:
        containerName: {{ .name }}
        operator: In
        values: [2, 4, 5]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
{{- end }}
template:
  metadata:
    {{- $selector := printf "%s\napp.kubernetes.io/component: %s" (include "fast-note.selectorLabels" $root) (.component | default "migration") }}
    labels:
      {{- include "fast-note.podLabels" (dict "root" $root "selector" $selector "extra" (merge (deepCopy (default (dict) $root.Values.migration.podLabels)) (default (dict) .podLabels))) | nindent 6 }}
    {{- include "fast-note.annotations" (dict "root" $root "annotations" $root.Values.migration.job.podAnnotations) | trim | nindent 4 }}
  spec:
    {{- $sa := .serviceAccountName | default (include "fast-note.migration.serviceAccountName" $root) }}
    {{- include "fast-note.migration.podSpec" (dict "root" $root "name" .name "args" .args "serviceAccountName" $sa "secretName" (include "fast-note.migration.secretName" $root) "secretKey" (include "fast-note.migration.secretKey" $root) "apiToken" .apiToken) | nindent 4 }}
{{- end -}}

{{/* Metadata annotations of a migration Job: (dict "root" $ "base" (dict ...)): the chart's own (hook, adoption) annotations with migration.job.annotations merged on top. */}}
{{- define "fast-note.migration.jobAnnotations" -}}
{{- $merged := merge (deepCopy (default (dict) .root.Values.migration.job.annotations)) .base -}}
{{- include "fast-note.annotations" (dict "root" .root "annotations" $merged) -}}
{{- end -}}


{{/* Egress rules every pod of the chart needs (YAML list items): DNS and the database. Argument: $. */}}
{{- define "fast-note.networkPolicy.baseEgress" -}}
{{- $np := .Values.networkPolicy -}}
- to:
    {{- toYaml $np.dns.peers | nindent 4 }}
  ports:
    - port: {{ $np.dns.port }}
      protocol: UDP
    - port: {{ $np.dns.port }}
      protocol: TCP
- to:
    {{- range $np.database.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  ports:
    - port: {{ $np.database.port }}
      protocol: TCP
{{- end -}}

{{/* Spec of the migrator pods' NetworkPolicy (migration Jobs, test Pod): no ingress, egress to DNS and the database. Argument: $. */}}
{{- define "fast-note.networkPolicy.migrationSpec" -}}
podSelector:
  matchLabels:
    {{- include "fast-note.selectorLabels" . | nindent 4 }}
  matchExpressions:
    - key: app.kubernetes.io/component
      operator: In
      values: [migration, test]
policyTypes: [Ingress, Egress]
ingress: []
egress:
  {{- include "fast-note.networkPolicy.baseEgress" . | nindent 2 }}
{{- end -}}

{{/* True when the chart renders pods other than the app's (migration Jobs, the test Pod). Argument: $. */}}
{{- define "fast-note.networkPolicy.migratorPods" -}}
{{- if or (has .Values.migration.strategy (list "hook" "job")) (and .Values.tests.enabled (include "fast-note.database.configured" .)) -}}true{{- end -}}
{{- end -}}
