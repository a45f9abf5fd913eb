{{/* Fails the render on value combinations that cannot work; each message says what to set. Included by the Deployment. Argument: $. */}}
{{- define "fast-note.validate" -}}
{{- $m := .Values.migration -}}
{{- $db := .Values.database -}}
{{- if and $db.url $db.existingSecret -}}
{{- fail "fast-note: database.url and database.existingSecret are both set; keep one: database.existingSecret (with database.existingSecretKey) for shared clusters, database.url only for development" -}}
{{- end -}}
{{- if and $m.database.url (or $m.database.existingSecret $m.database.existingSecretKey) -}}
{{- fail "fast-note: migration.database.url and migration.database.existingSecret/existingSecretKey are both set; keep one: migration.database.existingSecret (with migration.database.existingSecretKey) for shared clusters, migration.database.url only for development" -}}
{{- end -}}
{{- if and $m.database.existingSecretKey (not $m.database.existingSecret) (not $db.existingSecret) -}}
{{- fail "fast-note: migration.database.existingSecretKey names a key of an existing Secret: set migration.database.existingSecret (or database.existingSecret), or use migration.database.url" -}}
{{- end -}}
{{- if and (or $m.database.url $m.database.existingSecret) (not (include "fast-note.database.configured" .)) -}}
{{- fail "fast-note: migration.database is set but the app has no database: set database.existingSecret or database.url too (wait, verify and status use the app's credentials)" -}}
{{- end -}}
{{- if and (ne $m.strategy "none") (not (include "fast-note.database.configured" .)) -}}
{{- fail (printf "fast-note: migration.strategy=%s needs the database: set database.existingSecret (e.g. fast-note-secrets, key database.existingSecretKey) or database.url, or set migration.strategy=none" $m.strategy) -}}
{{- end -}}
{{- /* strategy none skips every migration object at once: argocd and contract settings are then left unused, not refused. */ -}}
{{- if and $m.argocd (not (has $m.strategy (list "hook" "job" "none"))) -}}
{{- fail (printf "fast-note: migration.argocd=true needs a migration Job: set migration.strategy to job (or hook), not %s" $m.strategy) -}}
{{- end -}}
{{- if and $m.contract.enabled (not (has $m.strategy (list "hook" "none"))) -}}
{{- fail (printf "fast-note: migration.contract.enabled=true runs as a post-upgrade hook: set migration.strategy=hook, or migration.contract.enabled=false (strategy is %s)" $m.strategy) -}}
{{- end -}}
{{- if and (include "fast-note.migration.contractEnabled" .) (ge (int (include "fast-note.durationSeconds" $m.contract.rolloutTimeout)) (int $m.job.activeDeadlineSeconds)) -}}
{{- fail (printf "fast-note: migration.contract.rolloutTimeout (%s) must be below migration.job.activeDeadlineSeconds (%d s), or the Job is killed while it waits for the rollout: lower rolloutTimeout or raise activeDeadlineSeconds" $m.contract.rolloutTimeout (int $m.job.activeDeadlineSeconds)) -}}
{{- end -}}
{{- if has $m.strategy (list "hook" "job") -}}
{{- $connect := include "fast-note.durationSeconds" $m.connectTimeout | int -}}
{{- $lock := include "fast-note.durationSeconds" $m.lockTimeout | int -}}
{{- if ge (add $connect $lock) (int $m.job.activeDeadlineSeconds) -}}
{{- fail (printf "fast-note: migration.connectTimeout (%s) + migration.lockTimeout (%s) = %d s must be below migration.job.activeDeadlineSeconds (%d s), or Kubernetes kills the Job before the migrator gives up and says why: lower connectTimeout or lockTimeout, or raise activeDeadlineSeconds (and Helm's --timeout with it)" $m.connectTimeout $m.lockTimeout (add $connect $lock) (int $m.job.activeDeadlineSeconds)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.database.cidrs) -}}
{{- fail "fast-note: networkPolicy.enabled=true needs networkPolicy.database.cidrs (the addresses of the database, PgBouncer or RDS Proxy, e.g. the RDS subnets): without them no pod could reach the database" -}}
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
{{- $replicas := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled | int -}}
{{- $min := toString $pdb.minAvailable -}}
{{- if or (eq $min "100%") (and (regexMatch "^[0-9]+$" $min) (ge (atoi $min) $replicas)) -}}
{{- fail (printf "fast-note: podDisruptionBudget.minAvailable=%s with %d app replicas lets no pod be evicted, so every node drain blocks: use podDisruptionBudget.maxUnavailable (e.g. 1, with minAvailable \"\") or raise the replicas" $min $replicas) -}}
{{- end -}}
{{- if has (toString $pdb.maxUnavailable) (list "0" "0%") -}}
{{- fail "fast-note: podDisruptionBudget.maxUnavailable=0 lets no pod be evicted, so every node drain blocks: set it to 1 or more" -}}
{{- end -}}
{{- end -}}
{{- end -}}
