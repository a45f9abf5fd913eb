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
{{- with .Values.imagePullSecrets }}
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

{{/* Volumes: (dict "root" $ "migrations" true "extra" list): /tmp always, the migrations emptyDir when asked, then extra volumes. */}}
{{- define "fast-note.volumes" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .root.Values.tmpSizeLimit | quote }}
{{- if .migrations }}
  - name: migrations
    emptyDir:
      sizeLimit: 64Mi
{{- end }}
{{- with .extra }}
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

{{/* Init container copying the migrations out of the APP image into the migrations emptyDir. Argument: $. */}}
{{- define "fast-note.copyMigrations.container" -}}
- name: copy-migrations
  image: {{ include "fast-note.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - cp
    - -r
    - {{ printf "%s/." (trimSuffix "/" .Values.migration.source.path) | quote }}
    - /migrations/
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

{{/* The migrator container: (dict "root" $ "name" "migrate" "args" (list ...) "secretName" "..."); secretName defaults to the release's database Secret. */}}
{{- define "fast-note.migrator.container" -}}
{{- $root := .root -}}
{{- $m := $root.Values.migration -}}
- name: {{ .name }}
  image: {{ include "fast-note.migrator.image" $root | quote }}
  imagePullPolicy: {{ $m.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  env:
    - name: DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ default (include "fast-note.database.secretName" $root) .secretName | quote }}
          key: {{ include "fast-note.database.secretKey" $root | quote }}
    - name: MIGRATIONS_DIR
      value: /migrations
    - name: MIGRATE_LOG_FORMAT
      value: {{ $m.logFormat | quote }}
    {{- with $m.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- include "fast-note.containerSecurityContext" $root | trim | nindent 2 }}
  {{- with $m.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: migrations
      mountPath: /migrations
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* Pod spec of a migrator pod (hook Job, plain Job, contract Job, test Pod): (dict "root" $ "name" "migrate" "args" (list ...) "serviceAccountName" "..." "secretName" "..." "restartPolicy" "Never" "apiToken" false); apiToken mounts the ServiceAccount token (the contract Job only). */}}
{{- define "fast-note.migration.podSpec" -}}
{{- $root := .root -}}
restartPolicy: {{ default "Never" .restartPolicy }}
serviceAccountName: {{ .serviceAccountName | quote }}
automountServiceAccountToken: {{ .apiToken | default false }}
enableServiceLinks: false
{{ include "fast-note.podCommon" $root | trim }}
initContainers:
  {{- include "fast-note.copyMigrations.container" $root | nindent 2 }}
containers:
  {{- include "fast-note.migrator.container" (dict "root" $root "name" .name "args" .args "secretName" .secretName) | nindent 2 }}
{{ include "fast-note.volumes" (dict "root" $root "migrations" true) }}
{{- end -}}
