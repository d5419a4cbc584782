{{/* Pod spec parts shared by the backup CronJob and the restore Job. */}}
{{- define "atx-jobqueue.redis.backupClaim" -}}
{{- default (include "atx-jobqueue.componentName" (dict "ctx" . "component" "redis-backup")) .Values.redis.backup.existingClaim }}
{{- end }}

{{/* "true" when the chart makes the backup claim (backup-pvc.yaml) and the Redis pod mounts it
(statefulset.yaml): the claim then has a consumer from the install on, so a WaitForFirstConsumer
storage class binds it at once, in the Redis pod's zone. Without one it stayed Pending until the
first scheduled backup (up to an hour): `helm install --wait` and Argo CD's health waited for it. */}}
{{- define "atx-jobqueue.redis.ownsBackupClaim" -}}
{{- if and .Values.redis.enabled (or .Values.redis.backup.enabled .Values.redis.restore.enabled) (not .Values.redis.backup.existingClaim) }}true{{ end }}
{{- end }}

{{- define "atx-jobqueue.redis.jobPodSecurity" -}}
securityContext:
  {{- toYaml .Values.redis.podSecurityContext | nindent 2 }}
{{- end }}

{{/* The Redis password as a file (/run/secrets/redis/password), so it never sits in an environment. */}}
{{- define "atx-jobqueue.redis.passwordVolume" -}}
- name: password
  secret:
    secretName: {{ include "atx-jobqueue.redis.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.redis.auth.existingSecretKey }}
        path: password
{{- end }}
