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

{{/*
Stop at render time when the object names would not work: Kubernetes accepts a StatefulSet or
CronJob name up to 63 characters but then cannot create its pods or Jobs above 52 (the
controller-revision-hash label and the Job names add 11), a Service name must start with a letter,
and a component name cut at 63 characters would collide with another (api/api-metrics,
redis/redis-client). Helm itself accepts release names of up to 53 characters.
*/}}
{{- define "atx-jobqueue.checkNames" -}}
{{- $fullname := include "atx-jobqueue.fullname" . }}
{{- $limit := 51 }}
{{- $why := printf "the API metrics Service %s-api-metrics would be over 63 characters" $fullname }}
{{- if .Values.redis.enabled }}
{{- $limit = 46 }}
{{- $why = printf "the Redis StatefulSet %s-redis would be over 52 characters, and Kubernetes could not create its pod" $fullname }}
{{- if .Values.redis.backup.enabled }}
{{- $limit = 39 }}
{{- $why = printf "the backup CronJob %s-redis-backup would be over 52 characters, which Kubernetes refuses" $fullname }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) }}
{{- fail (printf "object names start with %q, which is not a DNS label starting with a letter, so Kubernetes would refuse the Services: use a release name of lower-case letters, digits and dashes that starts with a letter, or set fullnameOverride" $fullname) }}
{{- end }}
{{- if gt (len $fullname) $limit }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- $releaseLimit := ternary $limit (sub $limit (add 1 (len $name))) (contains $name .Release.Name) }}
{{- $fix := printf "Use a release name of at most %d characters, or set fullnameOverride to a name of at most %d" (int $releaseLimit) $limit }}
{{- if .Values.fullnameOverride }}
{{- $fix = printf "Shorten fullnameOverride to at most %d characters" $limit }}
{{- else if lt (int $releaseLimit) 1 }}
{{- $fix = printf "Shorten nameOverride, or set fullnameOverride to a name of at most %d" $limit }}
{{- end }}
{{- fail (printf "object names start with %q (%d characters): %s. %s" $fullname (len $fullname) $why $fix) }}
{{- end }}
{{- end }}

{{/* A Kubernetes memory quantity (512Mi, 1Gi, 500M, 1000000) in bytes, as a float. */}}
{{- define "atx-jobqueue.quantityBytes" -}}
{{- $q := toString . }}
{{- $number := regexFind "^[0-9.]+" $q }}
{{- $unit := trimPrefix $number $q }}
{{- $scale := dict "" 1 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if not (and $number (hasKey $scale $unit)) }}
{{- fail (printf "%q is not a memory quantity this chart reads (e.g. 512Mi, 1Gi, 500M)" $q) }}
{{- end }}
{{- mulf (float64 $number) (get $scale $unit) }}
{{- end }}

{{/* redis.maxmemory as redis.conf takes it: a string as given (Redis reads its units in any case:
350M, 300Mb), a number (--set redis.maxmemory=300000000, or one in a values file, a float there)
as its digits in full, never 3e+08. */}}
{{- define "atx-jobqueue.redisMaxmemory" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ printf "%.0f" (float64 .) }}{{ end }}
{{- end }}

{{/* Redis's maxmemory (350mb, 1gb, 100000000) in bytes, as Redis reads it: k/m/g are powers of 1000, kb/mb/gb of 1024. */}}
{{- define "atx-jobqueue.redisBytes" -}}
{{- $v := lower (include "atx-jobqueue.redisMaxmemory" .) }}
{{- $number := regexFind "^[0-9]+" $v }}
{{- $scale := dict "" 1 "k" 1e3 "kb" 1024 "m" 1e6 "mb" 1048576 "g" 1e9 "gb" 1073741824 }}
{{- mulf (float64 $number) (get $scale (trimPrefix $number $v)) }}
{{- end }}

{{/*
Redis must refuse writes (maxmemory, noeviction: the API answers 503) before the kubelet kills it at
its memory limit: an OOM-killed Redis restarts, reloads its AOF to the same size and is killed again.
A memory limit lowered to fit a class quota (256Mi) under the default maxmemory (350mb) did that.
*/}}
{{- define "atx-jobqueue.checkRedisMemory" -}}
{{- $limit := ((.Values.redis.resources).limits).memory }}
{{- if and .Values.redis.enabled $limit }}
{{- $limitBytes := include "atx-jobqueue.quantityBytes" $limit | float64 }}
{{- $suggest := printf "%dmb" (int (divf (mulf $limitBytes 0.7) 1048576)) }}
{{- if or (not .Values.redis.maxmemory) (eq (include "atx-jobqueue.redisBytes" .Values.redis.maxmemory | float64) 0.0) }}
{{- fail (printf "redis.maxmemory is empty (or 0, which Redis reads as no limit) while redis.resources.limits.memory is %s: Redis would grow until it is OOM-killed (and again after each restart) instead of refusing writes. Set redis.maxmemory to about 70%% of the limit, e.g. %s" $limit $suggest) }}
{{- end }}
{{- if ge (include "atx-jobqueue.redisBytes" .Values.redis.maxmemory | float64) $limitBytes }}
{{- fail (printf "redis.maxmemory (%s) is not below redis.resources.limits.memory (%s): Redis would be OOM-killed (and again after each restart) before it refuses a write. Set redis.maxmemory to about 70%% of the limit, e.g. %s, or raise the limit" .Values.redis.maxmemory $limit $suggest) }}
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

{{/*
Labels of one component's pods: its object labels, then the component's podLabels (e.g.
.Values.api.podLabels). Neither commonLabels nor podLabels reaches a selector (selectorLabels
above): a selector is immutable once a Deployment or StatefulSet exists, so a label added there
would make every later upgrade fail. Include with (dict "ctx" $ "component" "api" "podLabels" ...).
*/}}
{{- define "atx-jobqueue.podLabels" -}}
{{- $labels := fromYaml (include "atx-jobqueue.labels" .) }}
{{- $own := fromYaml (include "atx-jobqueue.labels" (dict "ctx" (dict "Values" dict "Release" .ctx.Release "Chart" .ctx.Chart) "component" .component)) }}
{{- range $key, $value := .podLabels }}
{{- if hasKey $own $key }}
{{- fail (printf "%s.podLabels: %q is a label the chart sets itself (the Services, NetworkPolicies and the %s's selector match on the app.kubernetes.io labels): choose another key" $.component $key $.component) }}
{{- end }}
{{- $_ := set $labels $key $value }}
{{- end }}
{{- toYaml $labels }}
{{- end }}

{{/*
The `annotations:` block of an object's metadata: commonAnnotations, then the chart's own
annotations of that object (.own, YAML text), which win on a key both set (helm.sh/hook,
helm.sh/resource-policy and checkov.io/skip keep working). Nothing at all when both are empty, so
a ConfigMap whose rendered text is hashed into a checksum renders as before the value existed.
Include with {{- include "atx-jobqueue.annotations" (dict "ctx" $ "own" (include ...)) }} right
after the labels (it indents itself under metadata).
*/}}
{{- define "atx-jobqueue.annotations" -}}
{{- $own := dict }}
{{- with .own | trim }}
{{- $own = fromYaml . }}
{{- end }}
{{- range $key, $_ := .ctx.Values.commonAnnotations }}
{{- if hasPrefix "helm.sh/hook" $key }}
{{- fail (printf "commonAnnotations: %q would make every object of the release a Helm hook, which Helm creates outside the release and never upgrades or deletes with it: remove it" $key) }}
{{- end }}
{{- end }}
{{- $all := merge $own (deepCopy (default dict .ctx.Values.commonAnnotations)) }}
{{- with $all }}
{{- printf "annotations:\n%s" (toYaml . | indent 2) | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A component's extraVolumes (into the pod's volumes) or extraVolumeMounts (into its main
container): include with (dict "items" .Values.api.extraVolumes "reserved" (list "tmp" ...)
"what" "api.extraVolumes"). A name the chart already uses would be a duplicate the API server
refuses (spec.volumes[n].name: Duplicate value), so it stops here with the name to change.
*/}}
{{- define "atx-jobqueue.extraItems" -}}
{{- range .items }}
{{- if and $.reserved (has .name $.reserved) }}
{{- fail (printf "%s: the name %q is one of the chart's own volumes (%s): give the volume another name" $.what .name (join ", " $.reserved)) }}
{{- end }}
{{- end }}
{{- with .items }}
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

{{/*
Image reference: include with (dict "ctx" $ "repository" ...). A reference without a registry
resolves to docker.io/library/<name>, which does not exist for this project's images: stop at
render time with what to set, unless image.allowLocal says the images are loaded into the nodes
(kind load / minikube image load).
*/}}
{{- define "atx-jobqueue.image" -}}
{{- $registry := .ctx.Values.image.registry }}
{{- $tag := default .ctx.Chart.AppVersion .ctx.Values.image.tag }}
{{- if and (not $registry) (not (contains "/" .repository)) (not .ctx.Values.image.allowLocal) }}
{{- fail (printf "image.registry is not set, so the image %s:%s would be pulled from docker.io/library/, where it does not exist. Push the two images (make images; docs/images.md) and set --set image.registry=<registry>/<account> (e.g. docker.io/<you>), or, on kind/minikube with the images loaded into the node, --set image.allowLocal=true" .repository $tag) }}
{{- end }}
{{- if $registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .repository $tag }}
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

{{/* The Service clients connect through: a ClusterIP Service. Its name resolves whether or not Redis
is Ready, so a client that asks while Redis restarts gets "connection refused" and retries, where
the headless Service (the StatefulSet's serviceName, kept for upgrades: that field is immutable)
drops its DNS record, and the resolver caches the NXDOMAIN (negative TTL) after Redis is back. */}}
{{- define "atx-jobqueue.redis.clientName" -}}
{{- include "atx-jobqueue.componentName" (dict "ctx" . "component" "redis-client") }}
{{- end }}

{{- define "atx-jobqueue.redis.url" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:%d" (include "atx-jobqueue.redis.clientName" .) (int .Values.redis.port) }}
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

{{/*
The parsed columnar cache. With a data volume: beside the dataset on it, written only by the loader
(DATA_CACHE_MODE readwrite in load-data) and memory-mapped read-only by every API and worker pod
(readonly: never a write, never a per-pod parse while the cache is there), so the pods of a node share
its pages. Without one: the image's small sample, cached in each pod's /tmp.
*/}}
{{- define "atx-jobqueue.data.cacheDir" -}}
{{- if .Values.data.persistence.enabled }}
{{- printf "%s/cache" (trimSuffix "/" .Values.data.mountPath) }}
{{- else }}
{{- "/tmp/atx-data-cache" }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.data.cacheMode" -}}
{{- ternary "readonly" "readwrite" .Values.data.persistence.enabled }}
{{- end }}

{{- define "atx-jobqueue.apiToken.secretName" -}}
{{- default (include "atx-jobqueue.componentName" (dict "ctx" . "component" "api-token")) .Values.config.apiToken.existingSecret }}
{{- end }}

{{/* ---- environment shared by API, workers and the helm test ---- */}}

{{/* Environment from Secrets (the ConfigMap carries the rest): REDIS_PASSWORD, and API_TOKEN for the
pods that serve or call the API (the worker gets no token it does not use).
Call with (dict "ctx" . "apiToken" true|false). */}}
{{- define "atx-jobqueue.secretEnv" -}}
{{- $withToken := .apiToken }}
{{- with .ctx }}
{{- $secret := include "atx-jobqueue.redis.secretName" . }}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "atx-jobqueue.redis.secretKey" . }}
{{- end }}
{{- if and $withToken .Values.config.apiToken.enabled }}
- name: API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "atx-jobqueue.apiToken.secretName" . }}
      key: {{ .Values.config.apiToken.existingSecretKey }}
{{- end }}
{{- if and $withToken .Values.config.apiTokens.existingSecret }}
- name: API_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.config.apiTokens.existingSecret }}
      key: {{ .Values.config.apiTokens.existingSecretKey }}
{{- end }}
{{- end }}
{{- end }}

{{- define "atx-jobqueue.extraEnv" -}}
{{- with .Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll pods when their configuration changes. Only rendered, deterministic
content is hashed: a generated Secret is random per render (helm template, Argo CD), so hashing it
would roll every pod on every sync and give two pods two different sums in one render. */}}
{{- define "atx-jobqueue.checksums" -}}
checksum/config: {{ include "atx-jobqueue.checksum" (dict "ctx" . "template" "/config/configmap.yaml") }}
{{- end }}

{{/* sha256 of a rendered template, rendered without commonAnnotations: they are metadata only,
and a change of them must not roll the pods (or restart Redis) as a change of content does. With
no commonAnnotations the sum is the one charts before the value rendered, so upgrading to this
chart rolls nothing. Include with (dict "ctx" $ "template" "/redis/configmap.yaml"). */}}
{{- define "atx-jobqueue.checksum" -}}
{{- $values := merge (dict "commonAnnotations" dict) (omit .ctx.Values "commonAnnotations") }}
{{- $ctx := merge (dict "Values" $values) (omit .ctx "Values") }}
{{- include (print .ctx.Template.BasePath .template) $ctx | sha256sum }}
{{- end }}

{{/* prometheus.io annotations, unless a monitor already scrapes this pod (.monitored): a Prometheus
that honours both would scrape it twice and the dashboard's sums would double. */}}
{{- define "atx-jobqueue.scrapeAnnotations" -}}
{{- if and .ctx.Values.metrics.scrapeAnnotations (not .monitored) }}
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

{{/* SHUTDOWN_GRACE_SECONDS: at least JOB_TIMEOUT_SECONDS. A job runs at most its time limit from its
start, which is before the SIGTERM, so a worker given that long after the SIGTERM ends every job it
holds by itself (complete, or failed on the time limit) and none is handed back half-done; a shorter
grace cut any longer job at every scale-in, and could cut it again on each retry. */}}
{{- define "atx-jobqueue.worker.shutdownGrace" -}}
{{- $timeout := .Values.config.jobTimeoutSeconds }}
{{- $grace := .Values.config.shutdownGraceSeconds }}
{{- if kindIs "invalid" $grace }}
{{- $timeout }}
{{- else if lt (float64 $grace) (float64 $timeout) }}
{{- fail (printf "config.shutdownGraceSeconds (%v) is below config.jobTimeoutSeconds (%v): a scale-in or rollout would cut every job running longer than %v s and run it again from the start. Leave shutdownGraceSeconds empty (it then equals the job timeout), or lower jobTimeoutSeconds to bound how long a worker pod takes to stop" $grace $timeout $grace) }}
{{- else }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* The worker's pod grace: SIGTERM grace plus margin (record the outcome, give back unstarted ids,
exit), so the kubelet's SIGKILL never lands on a finishing job. */}}
{{- define "atx-jobqueue.worker.terminationGrace" -}}
{{- add (ceil (include "atx-jobqueue.worker.shutdownGrace" . | float64) | int) (int .Values.worker.terminationGraceExtraSeconds) }}
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
{{/*
Kept when the release lets go of it: on helm uninstall and on an upgrade whose values no longer
render it (resource-policy), and likewise under Argo CD, which reads resource-policy only as
Delete=false (kept when the Application is deleted) and prunes a dropped object unless Prune=false.
*/}}
{{- define "atx-jobqueue.keepAnnotations" -}}
helm.sh/resource-policy: keep
argocd.argoproj.io/sync-options: Prune=false,Delete=false
{{- end }}

{{- define "atx-jobqueue.checkovSkips" -}}
{{- $reasons := dict
  "digest" "CKV_K8S_43=images are referenced by version tag set per release (skaffold/CI); pin with image.tag: <tag>@sha256:<digest>"
  "pullPolicy" "CKV_K8S_15=IfNotPresent with immutable version tags; set the pullPolicy value to Always for mutable tags"
  "secretEnv" "CKV_K8S_35=the application reads REDIS_PASSWORD/API_TOKEN from its environment (jobqueue.settings contract)"
  "exporterEnv" "CKV_K8S_35=redis_exporter takes a bare password only as REDIS_PASSWORD (its REDIS_PASSWORD_FILE is a JSON map of addresses to passwords)"
  "probes" "CKV_K8S_8=runs to completion: a liveness probe has nothing to watch"
  "readiness" "CKV_K8S_9=runs to completion and receives no traffic: readiness is meaningless"
  "idle" "CKV_K8S_8=waits for kubectl cp/exec (data.shell): a liveness probe has nothing to watch"
}}
{{- range $i, $check := .checks }}
checkov.io/skip{{ add1 $i }}: {{ index $reasons $check | quote }}
{{- end }}
{{- end }}

{{/* "true" when the data volume is ReadWriteOnce only and its readers are kept on one node. */}}
{{- define "atx-jobqueue.data.colocated" -}}
{{- $p := .Values.data.persistence }}
{{- if and $p.enabled (eq (len $p.accessModes) 1) (has "ReadWriteOnce" $p.accessModes) .Values.worker.colocateWithData (not .Values.api.affinity) (not .Values.worker.affinity) }}true{{ end }}
{{- end }}

{{/*
Placement of the pods that mount the data volume (API, whose init container fills it, and workers):
the given affinity, or, with a ReadWriteOnce volume (attachable to one node), a required podAffinity
that keeps them all on the node of the first one. The first pod schedules freely (the scheduler's
exception for a pod matching its own term when no such pod exists), so a drained node's pods come
back together elsewhere. Include with (dict "ctx" $ "affinity" .Values.api.affinity).
*/}}
{{- define "atx-jobqueue.dataPlacement" -}}
{{- if .affinity }}
affinity:
  {{- toYaml .affinity | nindent 2 }}
{{- else if include "atx-jobqueue.data.colocated" .ctx }}
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

{{/*
Init container of the pods that read the data volume. In the API pod (.load true, loader enabled)
it fills the volume: `jobqueue data fetch` copies the image's sample or downloads the portal export,
and keeps a dataset already there. It runs inside the pod that mounts the volume, so it needs no
object Helm has not created yet (a pre-install hook would: the ServiceAccount, the PVC) and it
attaches the volume on the node the co-location rule chose (no Multi-Attach). Workers (and an API
whose loader is off) wait for the file instead.
*/}}
{{- define "atx-jobqueue.dataInit" -}}
{{- $v := .ctx.Values }}
{{- if $v.data.persistence.enabled }}
initContainers:
  {{- if and .load $v.data.loader.enabled }}
  - name: load-data
    image: {{ .image | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    # The project's own `jobqueue data fetch`: copies the image's sample or downloads loader.url,
    # checks that the file loads before it replaces the dataset, and keeps one already there
    # unless force. coreutils timeout ends it (and the pod restarts it) within activeDeadlineSeconds.
    command:
      - timeout
      - {{ $v.data.loader.activeDeadlineSeconds | quote }}
      - jobqueue
      - data
      - fetch
      - --output
      - {{ include "atx-jobqueue.data.path" .ctx | quote }}
      {{- if eq $v.data.loader.source "url" }}
      - --url
      - {{ $v.data.loader.url | quote }}
      {{- else }}
      - --from
      - {{ $v.data.imageSamplePath | quote }}
      {{- end }}
      {{- if not $v.data.loader.force }}
      - --keep-existing
      {{- end }}
    env:
      - name: DATA_PATH
        value: {{ include "atx-jobqueue.data.path" .ctx | quote }}
      # the parsed cache goes onto the volume beside the data: the API and worker pods map it read-only
      - name: DATA_CACHE_DIR
        value: {{ include "atx-jobqueue.data.cacheDir" .ctx | quote }}
      - name: DATA_CACHE_MODE
        value: readwrite
      {{- if not (kindIs "invalid" $v.config.dataDayFirst) }}
      # the reading the pods use: its cache is the one they map (a forced one has its own file)
      - name: DATA_DAY_FIRST
        value: {{ $v.config.dataDayFirst | quote }}
      {{- end }}
      {{- include "atx-jobqueue.extraEnv" .ctx | trim | nindent 6 }}
    resources:
      {{- toYaml $v.data.loader.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: data
        mountPath: {{ $v.data.mountPath }}
      - name: tmp
        mountPath: /tmp
  {{- else }}
  - name: wait-for-data
    image: {{ .image | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    # the file, then (while the loader may still be building it: an upgrade to a new cache format)
    # its parsed cache, so the pod maps it instead of parsing the file itself
    command:
      - jobqueue
      - data
      - wait
      - --cache-timeout
      - {{ ternary $v.data.loader.activeDeadlineSeconds 0 $v.data.loader.enabled | quote }}
    envFrom:
      - configMapRef:
          name: {{ include "atx-jobqueue.fullname" .ctx }}
    resources:
      requests:
        cpu: 10m
        memory: 32Mi
      limits:
        cpu: 100m
        memory: 128Mi
    securityContext:
      {{- toYaml $v.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: data
        mountPath: {{ $v.data.mountPath }}
        readOnly: true
  {{- end }}
{{- end }}
{{- end }}

{{/* API_METRICS_PORT: the API's /metrics listener, never the port the Ingress and the API Service
publish (PORT would then serve /metrics again). */}}
{{- define "atx-jobqueue.api.metricsPort" -}}
{{- if eq (int .Values.api.metricsPort) (int .Values.api.port) }}
{{- fail (printf "api.metricsPort (%d) must differ from api.port: /metrics has its own listener so that what publishes the API (Ingress, NodePort, LoadBalancer) does not publish the metrics" (int .Values.api.metricsPort)) }}
{{- end }}
{{- .Values.api.metricsPort | int }}
{{- end }}

{{/* The API pod's grace period: the preStop sleep, then gunicorn's graceful timeout, the most a
stopping API process lets a request run (services/api/jobqueue_api/serve.py, graceful_timeout: 30 s,
or twice CLIENT_TIMEOUT_SECONDS + 5 when longer). Long polls do not count: a stopping process
answers them at once, so MAX_WAIT_SECONDS no longer lengthens the grace. */}}
{{- define "atx-jobqueue.api.terminationGrace" -}}
{{- $graceful := max 30 (add (mul 2 (int .Values.config.clientTimeoutSeconds)) 5) }}
{{- add $graceful (int .Values.api.preStopSeconds) (int .Values.api.terminationGraceExtraSeconds) }}
{{- end }}

{{/* Autoscaling reads the API's queue gauges from Prometheus; without a ServiceMonitor nothing
scrapes them on kube-prometheus-stack (it ignores prometheus.io annotations) and the scaler would
see no series. Stop at render time unless the operator says the API is scraped another way. */}}
{{- define "atx-jobqueue.autoscaling.requireScrape" -}}
{{- if not (or .Values.metrics.serviceMonitor.enabled .Values.autoscaling.scrapedWithoutServiceMonitor) }}
{{- fail (printf "autoscaling.mode=%s reads the API's jobqueue_queue_depth from Prometheus: set metrics.serviceMonitor.enabled=true and metrics.serviceMonitor.labels to what your Prometheus selects (kube-prometheus-stack: release: <its release name>), or, if the API's metrics port is scraped another way with namespace and app_kubernetes_io_instance=<release> on its series (docs/observability.md), autoscaling.scrapedWithoutServiceMonitor=true" .Values.autoscaling.mode) }}
{{- end }}
{{- end }}

{{/*
ALLOWED_HOSTS of the API: loopback (kubectl port-forward), the API Service's in-cluster names, the
Ingress host when enabled, in NodePort or LoadBalancer mode api.service.nodePortHost (unset: any
host, so nobody reaching a node port or the load balancer's address is locked out), then
config.allowedHosts.
*/}}
{{- define "atx-jobqueue.allowedHosts" -}}
{{- $api := include "atx-jobqueue.componentName" (dict "ctx" . "component" "api") -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list "localhost" "127.0.0.1" "[::1]" $api (printf "%s.%s" $api $ns) (printf "%s.%s.svc" $api $ns) (printf "%s.%s.svc.cluster.local" $api $ns) -}}
{{- if .Values.api.ingress.enabled -}}
{{- $hosts = append $hosts .Values.api.ingress.host -}}
{{- end -}}
{{- if has .Values.api.service.type (list "NodePort" "LoadBalancer") -}}
{{- $hosts = append $hosts (default "*" .Values.api.service.nodePortHost) -}}
{{- end -}}
{{- join "," (concat $hosts .Values.config.allowedHosts) -}}
{{- end -}}

{{/* spec.strategy of the API or worker Deployment from api.strategy / worker.strategy, always
written out in full, so that whoever applies the chart owns every field of it from the first
install. Empty values give the API server's own default, RollingUpdate with maxSurge and
maxUnavailable 25%, and a rollingUpdate that names one of the two gets the other's default.
Why in full: a field the API server defaulted belongs to no field manager, and server-side apply
(Helm 4's default) never removes a field its manager does not own, so a later switch to Recreate
would keep the defaulted rollingUpdate and be refused ("spec.strategy.rollingUpdate: Forbidden:
may not be specified when strategy `type` is 'Recreate'"); a field Helm applied before and leaves
out now is removed (structured-merge-diff, merge/update.go, Updater.prune). With Recreate it also
writes rollingUpdate: null, for the client-side three-way merge patch (Helm 3, and Helm 4 on a
release Helm 3 made) of a release whose previous render had no rollingUpdate: the null is a delete
of the live field (kubernetes/kubernetes#24198). tests/deploy/test_server_side_apply.py runs both
merges. */}}
{{- define "atx-jobqueue.strategy" -}}
{{- $type := .type | default "RollingUpdate" }}
strategy:
  type: {{ $type }}
  {{- if eq $type "Recreate" }}
  rollingUpdate: null
  {{- else }}
  {{- $given := .rollingUpdate | default dict }}
  rollingUpdate:
    maxSurge: {{ ternary (index $given "maxSurge") "25%" (hasKey $given "maxSurge") | toJson }}
    maxUnavailable: {{ ternary (index $given "maxUnavailable") "25%" (hasKey $given "maxUnavailable") | toJson }}
  {{- end }}
{{- end }}
