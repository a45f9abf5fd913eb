{{/*
Pod fragments shared by the Deployment, the migration Jobs and the test Pod.
Each fragment exists once: the migrator container, the copy-migrations init container,
the pod-level security settings and the volumes.
*/}}

{{/* Pod-level settings every pod shares: security context, image pull secrets, node selector, tolerations. Argument: $. */}}
{{- define "fast-note.podCommon" -}}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $pullSecrets := list -}}
{{- range concat (default (list) (default (dict) .Values.global).imagePullSecrets) .Values.imagePullSecrets -}}
{{- $name := . -}}
{{- if kindIs "map" . }}{{ $name = .name }}{{ end -}}
{{- if not (has $name $pullSecrets) }}{{ $pullSecrets = append $pullSecrets $name }}{{ end -}}
{{- end -}}
{{- with $pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Volumes: (dict "root" $ "migrations" true "extra" list): /tmp always, the migrations emptyDir when asked, then extra volumes (the first of each name: an app pod gets both extraVolumes and migration.extraVolumes). */}}
{{- define "fast-note.volumes" -}}
{{- $extra := list -}}
{{- $names := list -}}
{{- range .extra -}}
{{- if not (has .name $names) -}}
{{- $extra = append $extra . -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- end -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .root.Values.tmpSizeLimit | quote }}
{{- if .migrations }}
  - name: migrations
    emptyDir:
      sizeLimit: 64Mi
{{- end }}
{{- with $extra }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container security context (restricted, read-only root file system). Argument: $. */}}
{{- define "fast-note.containerSecurityContext" -}}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* True when the migrations are copied out of the app image (migration.source.image app), not bundled in the migrator image. Argument: $. */}}
{{- define "fast-note.migration.copies" -}}
{{- if eq .Values.migration.source.image "app" -}}true{{- end -}}
{{- end -}}

{{/* Directory the migrator reads: the emptyDir the migrations are copied to, or the bundled folder in the migrator image. Argument: $. */}}
{{- define "fast-note.migration.dir" -}}
{{- if include "fast-note.migration.copies" . -}}/migrations{{- else -}}{{ .Values.migration.source.path }}{{- end -}}
{{- end -}}

{{/* Init container copying the migrations out of the APP image into the migrations emptyDir (cp, or migration.source.command for images without it). Argument: $. */}}
{{- define "fast-note.copyMigrations.container" -}}
- name: copy-migrations
  image: {{ include "fast-note.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    {{- with .Values.migration.source.command }}
    {{- toYaml . | nindent 4 }}
    {{- else }}
    - cp
    - -r
    - {{ printf "%s/." (trimSuffix "/" .Values.migration.source.path) | quote }}
    - /migrations/
    {{- end }}
  env:
    - name: MIGRATIONS_SOURCE
      value: {{ .Values.migration.source.path | quote }}
    - name: MIGRATIONS_DIR
      value: /migrations
  {{- include "fast-note.containerSecurityContext" . | trim | nindent 2 }}
  {{- with .Values.migration.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: migrations
      mountPath: /migrations
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* The migrator container: (dict "root" $ "name" "migrate" "args" (list ...) "secretName" "..." "secretKey" "..."); secretName and secretKey default to the app's database Secret and key. */}}
{{- define "fast-note.migrator.container" -}}
{{- $root := .root -}}
{{- $m := $root.Values.migration -}}
- name: {{ .name }}
  image: {{ include "fast-note.migrator.image" $root | quote }}
  imagePullPolicy: {{ $m.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  {{- $env := list
    (dict "name" "DATABASE_URL" "valueFrom" (dict "secretKeyRef" (dict "name" (default (include "fast-note.database.secretName" $root) .secretName) "key" (default (include "fast-note.database.secretKey" $root) .secretKey))))
    (dict "name" "MIGRATIONS_DIR" "value" (include "fast-note.migration.dir" $root))
    (dict "name" "MIGRATE_LOG_FORMAT" "value" $m.logFormat) }}
  env:
    {{- include "fast-note.envWithout" (dict "env" $env "extra" $m.extraEnv) | nindent 4 }}
  {{- include "fast-note.containerSecurityContext" $root | trim | nindent 2 }}
  {{- with $m.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    {{- if include "fast-note.migration.copies" $root }}
    - name: migrations
      mountPath: /migrations
      readOnly: true
    {{- end }}
    - name: tmp
      mountPath: /tmp
    {{- with $m.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* Pod spec of a migrator pod (hook Job, plain Job, contract Job, test Pod): (dict "root" $ "name" "migrate" "args" (list ...) "serviceAccountName" "..." "secretName" "..." "secretKey" "..." "restartPolicy" "Never" "apiToken" false); apiToken mounts the ServiceAccount token (the contract Job only). */}}
{{- define "fast-note.migration.podSpec" -}}
{{- $root := .root -}}
restartPolicy: {{ default "Never" .restartPolicy }}
serviceAccountName: {{ .serviceAccountName | quote }}
automountServiceAccountToken: {{ .apiToken | default false }}
enableServiceLinks: false
{{ include "fast-note.podCommon" $root | trim }}
{{- with $root.Values.migration.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.migration.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.migration.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- if include "fast-note.migration.copies" $root }}
initContainers:
  {{- include "fast-note.copyMigrations.container" $root | nindent 2 }}
{{- end }}
containers:
  {{- include "fast-note.migrator.container" (dict "root" $root "name" .name "args" .args "secretName" .secretName "secretKey" .secretKey) | nindent 2 }}
{{ include "fast-note.volumes" (dict "root" $root "migrations" (include "fast-note.migration.copies" $root) "extra" $root.Values.migration.extraVolumes) }}
{{- end -}}
