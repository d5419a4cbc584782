{{/*
Names, labels and the pieces every pod shares. One place per concern: a template that needs a
name, a label set, the Redis address or the environment asks here.
*/}}

{{- define "atx-jobqueue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "atx-jobqueue.fullname" -}}
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

{{- define "atx-jobqueue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "api"). */}}
{{- define "atx-jobqueue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "atx-jobqueue.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "atx-jobqueue.labels" -}}
helm.sh/chart: {{ include "atx-jobqueue.chart" .ctx }}
{{ include "atx-jobqueue.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: atx-jobqueue
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.componentName" -}}
{{- printf "%s-%s" (include "atx-jobqueue.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "atx-jobqueue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "atx-jobqueue.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: include with (dict "ctx" $ "repository" ...) */}}
{{- define "atx-jobqueue.image" -}}
{{- $registry := .ctx.Values.image.registry }}
{{- $tag := default .ctx.Chart.AppVersion .ctx.Values.image.tag }}
{{- if $registry }}
{{- printf "%s/%s:%s" $registry .repository $tag }}
{{- else }}
{{- printf "%s:%s" .repository $tag }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.apiImage" -}}
{{- include "atx-jobqueue.image" (dict "ctx" . "repository" .Values.image.api.repository) }}
{{- end }}

{{- define "atx-jobqueue.workerImage" -}}
{{- include "atx-jobqueue.image" (dict "ctx" . "repository" .Values.image.worker.repository) }}
{{- end }}

{{/* ---- Redis ---- */}}

{{- define "atx-jobqueue.redis.fullname" -}}
{{- include "atx-jobqueue.componentName" (dict "ctx" . "component" "redis") }}
{{- end }}

{{- define "atx-jobqueue.redis.url" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:%d" (include "atx-jobqueue.redis.fullname" .) (int .Values.redis.port) }}
{{- else }}
{{- required "externalRedis.url is required when redis.enabled is false" .Values.externalRedis.url }}
{{- end }}
{{- end }}

{{/* The Secret and key holding the Redis password ("" when there is none). */}}
{{- define "atx-jobqueue.redis.secretName" -}}
{{- if .Values.redis.enabled }}
{{- default (include "atx-jobqueue.redis.fullname" .) .Values.redis.auth.existingSecret }}
{{- else }}
{{- .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.redis.secretKey" -}}
{{- if .Values.redis.enabled }}
{{- .Values.redis.auth.existingSecretKey }}
{{- else }}
{{- .Values.externalRedis.existingSecretKey }}
{{- end }}
{{- end }}

{{/* ---- data ---- */}}

{{- define "atx-jobqueue.data.claimName" -}}
{{- default (include "atx-jobqueue.componentName" (dict "ctx" . "component" "data")) .Values.data.persistence.existingClaim }}
{{- end }}

{{- define "atx-jobqueue.data.path" -}}
{{- if .Values.data.persistence.enabled }}
{{- printf "%s/%s" (trimSuffix "/" .Values.data.mountPath) .Values.data.fileName }}
{{- else }}
{{- .Values.data.imageSamplePath }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.apiToken.secretName" -}}
{{- default (include "atx-jobqueue.componentName" (dict "ctx" . "component" "api-token")) .Values.config.apiToken.existingSecret }}
{{- end }}

{{/* ---- environment shared by API, workers and the helm test ---- */}}

{{/* Environment from Secrets (the ConfigMap carries the rest): REDIS_PASSWORD and API_TOKEN. */}}
{{- define "atx-jobqueue.secretEnv" -}}
{{- $secret := include "atx-jobqueue.redis.secretName" . }}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "atx-jobqueue.redis.secretKey" . }}
{{- end }}
{{- if .Values.config.apiToken.enabled }}
- name: API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "atx-jobqueue.apiToken.secretName" . }}
      key: {{ .Values.config.apiToken.existingSecretKey }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.extraEnv" -}}
{{- with .Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll pods when their configuration changes. */}}
{{- define "atx-jobqueue.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/config/configmap.yaml") . | sha256sum }}
{{- if and .Values.redis.enabled (not .Values.redis.auth.existingSecret) }}
checksum/redis-secret: {{ include (print .Template.BasePath "/redis/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.scrapeAnnotations" -}}
{{- if .ctx.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Scheduling block of one component: include with (dict "v" .Values.api). */}}
{{- define "atx-jobqueue.scheduling" -}}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The worker's pod grace: SIGTERM grace plus margin, so Kubernetes never kills a finishing job. */}}
{{- define "atx-jobqueue.worker.terminationGrace" -}}
{{- add (ceil .Values.config.shutdownGraceSeconds | int) (int .Values.worker.terminationGraceExtraSeconds) }}
{{- end }}

{{- define "atx-jobqueue.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{/*
checkov findings this chart accepts, as suppression annotations with their reasons.
Include with (dict "checks" (list "digest" "pullPolicy" ...)).
*/}}
{{- define "atx-jobqueue.checkovSkips" -}}
{{- $reasons := dict
  "digest" "CKV_K8S_43=images are referenced by version tag set per release (skaffold/CI); pin with image.tag: <tag>@sha256:<digest>"
  "pullPolicy" "CKV_K8S_15=IfNotPresent with immutable version tags; set the pullPolicy value to Always for mutable tags"
  "secretEnv" "CKV_K8S_35=the application reads REDIS_PASSWORD/API_TOKEN from its environment (jobqueue.settings contract)"
  "probes" "CKV_K8S_8=runs to completion: a liveness probe has nothing to watch"
  "readiness" "CKV_K8S_9=runs to completion and receives no traffic: readiness is meaningless"
}}
{{- range $i, $check := .checks }}
checkov.io/skip{{ add1 $i }}: {{ index $reasons $check | quote }}
{{- end }}
{{- end }}

{{/*
Placement of the pods that read the data volume (API and workers): the given affinity, or, with a
ReadWriteOnce volume (attachable to one node), a required podAffinity that keeps them all on the
node of the first one. Include with (dict "ctx" $ "affinity" .Values.api.affinity).
*/}}
{{- define "atx-jobqueue.dataPlacement" -}}
{{- $p := .ctx.Values.data.persistence }}
{{- $rwoOnly := and $p.enabled (eq (len $p.accessModes) 1) (has "ReadWriteOnce" $p.accessModes) }}
{{- if .affinity }}
affinity:
  {{- toYaml .affinity | nindent 2 }}
{{- else if and $rwoOnly .ctx.Values.worker.colocateWithData }}
affinity:
  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            app.kubernetes.io/name: {{ include "atx-jobqueue.name" .ctx }}
            app.kubernetes.io/instance: {{ .ctx.Release.Name }}
          matchExpressions:
            - key: app.kubernetes.io/component
              operator: In
              values: [api, worker]
{{- end }}
{{- end }}

{{/* Init container that waits for DATA_PATH on the data volume (filled by the loader or by hand). */}}
{{- define "atx-jobqueue.dataWait" -}}
{{- if .ctx.Values.data.persistence.enabled }}
initContainers:
  - name: wait-for-data
    image: {{ .image | quote }}
    imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
    command:
      - python
      - -c
      - |
        import os, time
        path = os.environ["DATA_PATH"]
        while not (os.path.isfile(path) and os.path.getsize(path) > 0):
            print(f"waiting for {path}", flush=True)
            time.sleep(5)
        print(f"found {path}", flush=True)
    envFrom:
      - configMapRef:
          name: {{ include "atx-jobqueue.fullname" .ctx }}
    resources:
      requests:
        cpu: 10m
        memory: 32Mi
      limits:
        cpu: 100m
        memory: 64Mi
    securityContext:
      {{- toYaml .ctx.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: data
        mountPath: {{ .ctx.Values.data.mountPath }}
        readOnly: true
{{- end }}
{{- end }}
