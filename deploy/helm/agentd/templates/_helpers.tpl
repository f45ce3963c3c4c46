{{/* Base name: release-based, color suffix in blue-green mode. */}}
{{- define "agentd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentd.baseFullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "agentd.color" -}}
{{- $c := .Values.color | default "" | toString -}}
{{- if and $c (not (has $c (list "blue" "green"))) -}}
{{- fail (printf "color must be blue, green or empty, not %q" $c) -}}
{{- end -}}
{{- $c -}}
{{- end -}}

{{/* fullname: "<release>-agentd[-<color>]", unless the release name already ends with the color. */}}
{{- define "agentd.fullname" -}}
{{- $base := include "agentd.baseFullname" . -}}
{{- $c := include "agentd.color" . -}}
{{- if and $c (not (hasSuffix (printf "-%s" $c) $base)) -}}
{{- printf "%s-%s" $base $c | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- $base | trunc 56 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agentd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentd.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Labels shared by every object. */}}
{{- define "agentd.labels" -}}
helm.sh/chart: {{ include "agentd.chart" . }}
app.kubernetes.io/name: {{ include "agentd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentd
{{- with include "agentd.color" . }}
agentd.io/color: {{ . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component (api, worker). Call with (dict "root" $ "component" "api"). */}}
{{- define "agentd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentd.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with include "agentd.color" .root }}
agentd.io/color: {{ . }}
{{- end }}
{{- end -}}

{{- define "agentd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "agentd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds = drain delay + drain timeout + margin. */}}
{{- define "agentd.terminationGrace" -}}
{{- add (int .Values.drain.delaySeconds) (int .Values.drain.timeoutSeconds) (int .Values.drain.graceMarginSeconds) -}}
{{- end -}}

{{/*
Memory limit ("512Mi", "1Gi", "1G", "536870912") in bytes, "" when it
cannot be parsed.
*/}}
{{- define "agentd.memoryBytes" -}}
{{- $s := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $unit := trimPrefix $num $s -}}
{{- if and $num (or (eq $unit "") (hasKey $units $unit)) -}}
{{- $mult := 1 -}}
{{- if $unit }}{{ $mult = get $units $unit }}{{ end -}}
{{- mulf (float64 $num) (float64 $mult) | int64 -}}
{{- end -}}
{{- end -}}

{{/* The config file: .Values.config plus what the chart owns. */}}
{{- define "agentd.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $server := get $cfg "server" | default dict -}}
{{- $_ := set $server "addr" ":8080" -}}
{{- $_ := set $server "drain_delay" (printf "%ds" (int .Values.drain.delaySeconds)) -}}
{{- $_ := set $server "drain_timeout" (printf "%ds" (int .Values.drain.timeoutSeconds)) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $providers := get $cfg "providers" | default dict -}}
{{- $anth := get $providers "anthropic" | default dict -}}
{{- $_ := set $anth "simulate" .Values.anthropic.simulate -}}
{{- with .Values.anthropic.baseURL }}{{ $_ := set $anth "base_url" . }}{{ end -}}
{{- if .Values.anthropic.existingSecret -}}
{{- $keys := get $anth "keys" | default dict -}}
{{- $_ := set $keys "sources" (list (dict "file" (printf "%s/%s" .Values.anthropic.mountPath .Values.anthropic.keysKey))) -}}
{{- $_ := set $anth "keys" $keys -}}
{{- end -}}
{{- $_ := set $providers "anthropic" $anth -}}
{{- $_ := set $cfg "providers" $providers -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Environment of every agentd container (role aside). */}}
{{- define "agentd.env" -}}
- name: AGENTD_CONFIG
  value: /etc/agentd/agentd.yaml
{{- if .Values.store.url }}
- name: AGENTD_STORE_URL
  value: {{ .Values.store.url | quote }}
{{- else if .Values.store.existingSecret }}
- name: AGENTD_STORE_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.store.existingSecret }}, key: {{ .Values.store.existingSecretKey }}}
{{- else }}
{{- fail "set store.existingSecret (a Secret holding the PostgreSQL URL) or store.url" }}
{{- end }}
{{- if .Values.redis.url }}
- name: AGENTD_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- else if .Values.redis.existingSecret }}
- name: AGENTD_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.existingSecret }}, key: {{ .Values.redis.existingSecretKey }}}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
One component's Deployment pod template. Call with
(dict "root" $ "component" "api" "c" .Values.api "role" "api").
*/}}
{{- define "agentd.podTemplate" -}}
{{- $root := .root -}}
{{- $c := .c -}}
metadata:
  labels:
    {{- include "agentd.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  annotations:
    checksum/config: {{ include "agentd.config" $root | sha256sum }}
    {{- with $c.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "agentd.serviceAccountName" $root }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "agentd.terminationGrace" $root }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- if $c.topologySpread.enabled }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: {{ $c.topologySpread.zoneWhenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "agentd.selectorLabels" (dict "root" $root "component" .component) | nindent 10 }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: {{ $c.topologySpread.nodeWhenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "agentd.selectorLabels" (dict "root" $root "component" .component) | nindent 10 }}
  {{- end }}
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: agentd
      image: {{ include "agentd.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: ["serve", "--role={{ .role }}"]
      ports:
        - {name: http, containerPort: 8080, protocol: TCP}
      env:
        {{- include "agentd.env" $root | nindent 8 }}
        {{- if eq .role "worker" }}
        - name: AGENTD_WORKER_CONCURRENCY
          value: {{ $c.concurrency | quote }}
        {{- end }}
        {{- if $root.Values.gomemlimit.enabled }}
        {{- $bytes := "" }}
        {{- with $c.resources.limits }}{{- with .memory }}{{ $bytes = include "agentd.memoryBytes" . }}{{ end }}{{- end }}
        {{- if $bytes }}
        - name: GOMEMLIMIT
          # {{ $root.Values.gomemlimit.ratio }} × limits.memory
          value: {{ mulf (float64 $bytes) (float64 $root.Values.gomemlimit.ratio) | int64 | quote }}
        {{- else }}
        - name: GOMEMLIMIT
          valueFrom:
            resourceFieldRef: {containerName: agentd, resource: limits.memory, divisor: "1"}
        {{- end }}
        {{- end }}
      startupProbe:
        httpGet: {path: {{ $c.probes.startup.path }}, port: http}
        periodSeconds: {{ $c.probes.startup.periodSeconds }}
        timeoutSeconds: {{ $c.probes.startup.timeoutSeconds }}
        failureThreshold: {{ $c.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet: {path: {{ $c.probes.liveness.path }}, port: http}
        periodSeconds: {{ $c.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $c.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $c.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet: {path: {{ $c.probes.readiness.path }}, port: http}
        periodSeconds: {{ $c.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $c.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $c.probes.readiness.failureThreshold }}
        successThreshold: {{ $c.probes.readiness.successThreshold | default 1 }}
      resources:
        {{- toYaml $c.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - {name: config, mountPath: /etc/agentd, readOnly: true}
        - {name: tmp, mountPath: /tmp}
        {{- if $root.Values.anthropic.existingSecret }}
        - {name: anthropic-keys, mountPath: {{ $root.Values.anthropic.mountPath }}, readOnly: true}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "agentd.fullname" $root }}
    - name: tmp
      emptyDir: {sizeLimit: 64Mi}
    {{- if $root.Values.anthropic.existingSecret }}
    - name: anthropic-keys
      secret:
        secretName: {{ $root.Values.anthropic.existingSecret }}
        defaultMode: 0440
        items:
          - {key: {{ $root.Values.anthropic.keysKey }}, path: {{ $root.Values.anthropic.keysKey }}}
    {{- end }}
{{- end -}}
