{{/* Fails the render on value combinations that cannot work; each message says what to set. Included by the Deployment. Argument: $. */}}
{{- define "fast-note.validate" -}}
{{- $m := .Values.migration -}}
{{- $db := .Values.database -}}
{{- if and $db.url $db.existingSecret -}}
{{- fail "fast-note: database.url and database.existingSecret are both set; keep one: database.existingSecret (with database.existingSecretKey) for shared clusters, database.url only for development" -}}
{{- end -}}
{{- if and (ne $m.strategy "none") (not (include "fast-note.database.configured" .)) -}}
{{- fail (printf "fast-note: migration.strategy=%s needs the database: set database.existingSecret (e.g. fast-note-secrets, key database.existingSecretKey) or database.url, or set migration.strategy=none" $m.strategy) -}}
{{- end -}}
{{- if and $m.argocd (not (has $m.strategy (list "hook" "job"))) -}}
{{- fail (printf "fast-note: migration.argocd=true needs a migration Job: set migration.strategy to job (or hook), not %s" $m.strategy) -}}
{{- end -}}
{{- if and $m.contract.enabled (ne $m.strategy "hook") -}}
{{- fail (printf "fast-note: migration.contract.enabled=true runs as a post-upgrade hook: set migration.strategy=hook, or migration.contract.enabled=false (strategy is %s)" $m.strategy) -}}
{{- end -}}
{{- if and $m.contract.enabled (ge (int (include "fast-note.durationSeconds" $m.contract.rolloutTimeout)) (int $m.job.activeDeadlineSeconds)) -}}
{{- fail (printf "fast-note: migration.contract.rolloutTimeout (%s) must be below migration.job.activeDeadlineSeconds (%d s), or the Job is killed while it waits for the rollout: lower rolloutTimeout or raise activeDeadlineSeconds" $m.contract.rolloutTimeout (int $m.job.activeDeadlineSeconds)) -}}
{{- end -}}
{{- if and (not $m.serviceAccount.create) $m.serviceAccount.annotations -}}
{{- fail "fast-note: migration.serviceAccount.annotations only apply to a ServiceAccount the chart creates: set migration.serviceAccount.create=true or drop the annotations" -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) .Values.serviceAccount.annotations -}}
{{- fail "fast-note: serviceAccount.annotations only apply to a ServiceAccount the chart creates: set serviceAccount.create=true or drop the annotations" -}}
{{- end -}}
{{- if and .Values.config.existingConfigMap .Values.config.data -}}
{{- fail "fast-note: config.existingConfigMap and config.data are both set; put the variables into the existing ConfigMap, or clear config.existingConfigMap to let the chart render one" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "fast-note: autoscaling.minReplicas is greater than autoscaling.maxReplicas; lower minReplicas or raise maxReplicas" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail "fast-note: autoscaling.enabled=true needs a metric: set autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage above 0" -}}
{{- end -}}
{{- if .Values.podDisruptionBudget.enabled -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and (not (kindIs "invalid" $pdb.minAvailable)) (ne (toString $pdb.minAvailable) "") (ne (toString $pdb.maxUnavailable) "") -}}
{{- fail "fast-note: podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable are both set; set one and leave the other empty (\"\")" -}}
{{- end -}}
{{- if and (eq (toString $pdb.minAvailable) "") (eq (toString $pdb.maxUnavailable) "") -}}
{{- fail "fast-note: podDisruptionBudget.enabled=true needs podDisruptionBudget.minAvailable or podDisruptionBudget.maxUnavailable" -}}
{{- end -}}
{{- end -}}
{{- end -}}
