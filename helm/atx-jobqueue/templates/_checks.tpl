{{/*
Settings the API server (or KEDA) would refuse at install, refused here at render instead: helm
install would otherwise create half the release before one object fails, and Argo CD would show a
degraded app, each with a message about an object rather than the value to change. Each message
names the value, what was given and the limit. Included once, from config/configmap.yaml.
*/}}
{{- define "atx-jobqueue.checkValues" -}}
{{- include "atx-jobqueue.checkCommonLabels" . }}
{{- include "atx-jobqueue.checkAutoscaling" . }}
{{- include "atx-jobqueue.checkNodePort" . }}
{{- include "atx-jobqueue.checkIngressHost" . }}
{{- include "atx-jobqueue.checkResources" (dict "path" "api.resources" "resources" .Values.api.resources) }}
{{- include "atx-jobqueue.checkResources" (dict "path" "worker.resources" "resources" .Values.worker.resources) }}
{{- if and .Values.data.persistence.enabled .Values.data.loader.enabled }}
{{- include "atx-jobqueue.checkResources" (dict "path" "data.loader.resources" "resources" .Values.data.loader.resources) }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- include "atx-jobqueue.checkResources" (dict "path" "redis.resources" "resources" .Values.redis.resources) }}
{{- if .Values.redis.exporter.enabled }}
{{- include "atx-jobqueue.checkResources" (dict "path" "redis.exporter.resources" "resources" .Values.redis.exporter.resources) }}
{{- end }}
{{- end }}
{{- include "atx-jobqueue.checkVolumes" . }}
{{- include "atx-jobqueue.checkScriptName" . }}
{{- end }}

{{/*
SCRIPT_NAME (a path prefix for the API, docs/ui.md) in the API's environment: gunicorn then answers
every path outside the prefix, /healthz and /readyz included, with its HTML 500, so the API pods'
probes fail and the kubelet restarts them for ever. The chart serves the API at / of its own host
(api.ingress.path must be / for the same reason), so the wish is refused here, like that path.
*/}}
{{- define "atx-jobqueue.checkScriptName" -}}
{{- range $where, $env := dict "config.extraEnv" .Values.config.extraEnv "api.extraEnv" .Values.api.extraEnv }}
{{- range $env }}
{{- if eq (toString .name) "SCRIPT_NAME" }}
{{- fail (printf "SCRIPT_NAME in %s (%q): gunicorn would answer every path outside it, /healthz and /readyz included, with a 500, so the API pods' probes would fail and they would restart for ever. The chart serves the API at / of its own host: give it a host of its own (api.ingress.host), or strip the prefix in the proxy in front (docs/ui.md, \"Behind an Ingress path prefix\")" $where (toString .value)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
commonLabels may not set a label the chart sets itself (app.kubernetes.io/name, instance,
component, version, managed-by, part-of, helm.sh/chart): the labels helper would write the key
twice in metadata.labels (duplicate YAML keys: kubectl and Argo CD refuse the manifest or keep one
silently), and a pod template whose app.kubernetes.io/name or instance is the user's would no
longer match its Deployment's selector, which is immutable and never takes commonLabels. Refused
like the same keys in podLabels (the labels helpers), naming every such key at once.
*/}}
{{- define "atx-jobqueue.checkCommonLabels" -}}
{{- $own := fromYaml (include "atx-jobqueue.labels" (dict "ctx" (dict "Values" dict "Release" .Release "Chart" .Chart) "component" "api")) }}
{{- $clash := list }}
{{- range $key, $_ := .Values.commonLabels }}
{{- if hasKey $own $key }}
{{- $clash = append $clash (printf "%q" $key) }}
{{- end }}
{{- end }}
{{- with $clash }}
{{- fail (printf "commonLabels: %s %s the chart sets itself on every object: commonLabels would write each such key a second time in metadata.labels (a duplicate key, which kubectl and Argo CD refuse or resolve silently), and the Services, NetworkPolicies and Deployments' selectors match on the chart's app.kubernetes.io labels. Choose another key (e.g. example.org/part-of), or nameOverride to change the name" (join ", " .) (ternary "are labels" "is a label" (gt (len .) 1))) }}
{{- end }}
{{- end }}

{{/*
A quantity as the API server reads it (100m, 0.5, 1, 256Mi, 1G, 1e3), as a float. ctx: "value",
and "name" (the value's path, for the message).
*/}}
{{- define "atx-jobqueue.quantity" -}}
{{- $q := toString .value }}
{{- $number := regexFind "^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(e[-+]?[0-9]+)?" $q }}
{{- $unit := trimPrefix $number $q }}
{{- $scale := dict "" 1 "m" 1e-3 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 }}
{{- if not (and $number (hasKey $scale $unit)) }}
{{- fail (printf "%s is %q, which is not a Kubernetes quantity (e.g. 250m or 1 for CPU, 512Mi or 1Gi for memory)" .name $q) }}
{{- end }}
{{- mulf (float64 $number) (get $scale $unit) }}
{{- end }}

{{/*
HPA: the API server refuses maxReplicas below minReplicas (kubernetes
pkg/apis/autoscaling/validation: "must be greater than or equal to `minReplicas`"); the chart's
HPA sets minReplicas to at least 1. KEDA refuses minReplicaCount above maxReplicaCount in its CRD's
validation rule (from 2.20) and in its admission webhook (when installed); without either, its
operator accepts the ScaledObject, marks it not Ready (CheckReplicaCountBoundsAreValid) and never
creates the HPA, so the workers silently never scale. Equal is allowed by both.
*/}}
{{- define "atx-jobqueue.checkAutoscaling" -}}
{{- $a := .Values.autoscaling }}
{{- if ne $a.mode "none" }}
{{- $min := int $a.minReplicas }}
{{- $what := "the KEDA ScaledObject's minReplicaCount above its maxReplicaCount, which KEDA refuses (its CRD from 2.20, its admission webhook) or, without either, accepts and never scales (its operator marks the ScaledObject not Ready)" }}
{{- if eq $a.mode "hpa" }}
{{- $min = max 1 $min | int }}
{{- $what = "the HorizontalPodAutoscaler's minReplicas above its maxReplicas, which the API server refuses (hpa mode runs at least 1 worker)" }}
{{- end }}
{{- if gt $min (int $a.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d): that would make %s. Set maxReplicas to at least %d, or lower minReplicas" (int $a.minReplicas) (int $a.maxReplicas) $what $min) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The API server allocates a Service's nodePort only inside its --service-node-port-range
(30000-32767 unless the cluster changed it) and refuses any other ("provided port is not in the
valid range"). The chart cannot ask the cluster, so api.service.nodePortRange says the range. It
falls back to the default when absent: `helm upgrade --reuse-values` from a chart without the value
passes the previous release's values, where it is missing.
*/}}
{{- define "atx-jobqueue.checkNodePort" -}}
{{- $svc := .Values.api.service }}
{{- if and (eq $svc.type "NodePort") $svc.nodePort }}
{{- $range := $svc.nodePortRange | default "30000-32767" }}
{{- $bounds := splitList "-" $range }}
{{- $low := index $bounds 0 | int }}
{{- $high := index $bounds 1 | int }}
{{- if or (lt (int $svc.nodePort) $low) (gt (int $svc.nodePort) $high) }}
{{- fail (printf "api.service.nodePort (%d) is outside the node port range %s (api.service.nodePortRange): the API server would refuse the Service. Pick a port in %s, leave nodePort empty to let the cluster pick one, or, if your cluster's --service-node-port-range is another, set api.service.nodePortRange to it" (int $svc.nodePort) $range $range) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The API server takes an Ingress host only as a lower-case DNS-1123 subdomain (253 characters at
most), optionally with one leading "*." label, and never an IP address (kubernetes
pkg/apis/networking/validation, validateIngressRules). `host: null` in a values file deletes the
default, so the host reaches here unset, which toString would print as "<nil>".
*/}}
{{- define "atx-jobqueue.checkIngressHost" -}}
{{- if .Values.api.ingress.enabled }}
{{- $host := toString .Values.api.ingress.host }}
{{- $dns := "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" }}
{{- $why := "" }}
{{- if not .Values.api.ingress.host }}
{{- fail "api.ingress.host is not set (null in a values file removes the chart's default): leave the key out of your values (the chart's default, atx-jobqueue.example.com, is only a placeholder) or give the DNS name the Ingress routes, e.g. --set api.ingress.host=<user>-atx-jobqueue.coe332.tacc.cloud; without an Ingress, set api.ingress.enabled=false" }}
{{- else if contains "://" $host }}
{{- $why = "a URL; give the host name alone (no scheme, port or path)" }}
{{- else if regexMatch "^[0-9]+(\\.[0-9]+){3}$|:" $host }}
{{- $why = "an IP address or has a port; an Ingress routes a DNS name (reach an address through api.service.type=NodePort or LoadBalancer instead)" }}
{{- else if gt (len $host) 253 }}
{{- $why = printf "%d characters long, over the 253 a DNS name may have" (len $host) }}
{{- else if not (regexMatch $dns $host) }}
{{- $why = "not a DNS name in lower case (letters a-z, digits, '-' and '.', each label starting and ending with a letter or digit, optionally a leading '*.')" }}
{{- if regexMatch $dns (lower $host) }}
{{- $why = printf "%s: use %q" $why (lower $host) }}
{{- end }}
{{- end }}
{{- if $why }}
{{- fail (printf "api.ingress.host %q is %s. The API server would refuse the Ingress" $host $why) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The API server refuses a container whose request is above its limit (kubernetes
pkg/apis/core/validation, ValidateResourceRequirements: "must be less than or equal to cpu
limit"). ctx: "path" (the value's name) and "resources".
*/}}
{{- define "atx-jobqueue.checkResources" -}}
{{- $path := .path }}
{{- $requests := (.resources | default dict).requests | default dict }}
{{- $limits := (.resources | default dict).limits | default dict }}
{{- range $name := list "cpu" "memory" }}
{{- $request := get $requests $name }}
{{- $limit := get $limits $name }}
{{- if and $request $limit }}
{{- $r := include "atx-jobqueue.quantity" (dict "value" $request "name" (printf "%s.requests.%s" $path $name)) | float64 }}
{{- $l := include "atx-jobqueue.quantity" (dict "value" $limit "name" (printf "%s.limits.%s" $path $name)) | float64 }}
{{- if gt $r $l }}
{{- fail (printf "%s.requests.%s (%v) is above %s.limits.%s (%v): the API server refuses a container whose request is above its limit. Raise the limit or lower the request" $path $name $request $path $name $limit) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volumes: the API server refuses a claim of size 0 ("must be greater than zero"); a size in m
(thousandths of a byte, 500m for 500M) passes it but no provisioner makes one. ReadWriteOncePod
lets one pod in the cluster use the claim, and the API and every worker mount the data volume:
all but one would stay Pending.
*/}}
{{- define "atx-jobqueue.checkVolumes" -}}
{{- $sizes := dict }}
{{- if and .Values.data.persistence.enabled (not .Values.data.persistence.existingClaim) }}
{{- $_ := set $sizes "data.persistence.size" .Values.data.persistence.size }}
{{- end }}
{{- if and .Values.redis.enabled .Values.redis.persistence.enabled }}
{{- $_ := set $sizes "redis.persistence.size" .Values.redis.persistence.size }}
{{- end }}
{{- if and .Values.redis.enabled .Values.redis.backup.enabled (not .Values.redis.backup.existingClaim) }}
{{- $_ := set $sizes "redis.backup.size" .Values.redis.backup.size }}
{{- end }}
{{- range $name, $size := $sizes }}
{{- $bytes := include "atx-jobqueue.quantity" (dict "value" $size "name" $name) | float64 }}
{{- if or (lt $bytes 1.0) (hasSuffix "m" (toString $size)) }}
{{- fail (printf "%s is %q, not a volume size: the API server refuses a claim of 0, and m means thousandths of a byte. Use e.g. 2Gi or 500Mi" $name (toString $size)) }}
{{- end }}
{{- end }}
{{- $p := .Values.data.persistence }}
{{- if and $p.enabled (not $p.existingClaim) (has "ReadWriteOncePod" $p.accessModes) (eq (len $p.accessModes) 1) }}
{{- fail "data.persistence.accessModes is [ReadWriteOncePod]: one pod in the cluster may use such a claim, but the API and every worker mount the data volume, so all but one would stay Pending. Use ReadWriteOnce (pods kept on one node) or ReadWriteMany" }}
{{- end }}
{{- end }}
