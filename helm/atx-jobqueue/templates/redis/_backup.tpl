{{/* Pod spec parts shared by the backup CronJob and the restore Job. */}}
{{- define "atx-jobqueue.redis.backupClaim" -}}
{{- default (include "atx-jobqueue.componentName" (dict "ctx" . "component" "redis-backup")) .Values.redis.backup.existingClaim }}
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
