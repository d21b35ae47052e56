{{/* The chart's name, or nameOverride. */}}
{{- define "authproxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name: fullnameOverride, else the release name, with the
chart's name appended unless the release name already holds it. */}}
{{- define "authproxy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select authproxy's pods; never change them on upgrade. */}}
{{- define "authproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "authproxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "authproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Secret holding the client secret, the cookie secret and the Redis URL. */}}
{{- define "authproxy.secretName" -}}
{{- default (include "authproxy.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/* Where the routes and rules files are mounted: a directory, never a
subPath, so that the kubelet's updates reach the running pod. */}}
{{- define "authproxy.filesDir" -}}/etc/authproxy/files{{- end -}}

{{/* Fails the render on values that cannot work, listing every problem. */}}
{{- define "authproxy.validate" -}}
{{- $problems := list -}}
{{- if and .Values.upstream .Values.routes -}}
{{- $problems = append $problems "set one of upstream and routes, not both (AUTHPROXY_UPSTREAM is the one-line form of a routes file)" -}}
{{- end -}}
{{- if not (or .Values.upstream .Values.routes) -}}
{{- $problems = append $problems "set upstream or routes: authproxy needs something to protect" -}}
{{- end -}}
{{- range $k, $v := .Values.config -}}
{{- if has $k (list "AUTHPROXY_UPSTREAM" "AUTHPROXY_ROUTES_FILE" "AUTHPROXY_RULES_FILE" "AUTHPROXY_ADDR" "AUTHPROXY_METRICS_ADDR" "AUTHPROXY_DRAIN_DELAY" "AUTHPROXY_SHUTDOWN_TIMEOUT" "AUTHPROXY_SESSION_STORE" "AUTHPROXY_RELOAD_INTERVAL") -}}
{{- $problems = append $problems (printf "config.%s: the chart sets it from its own value (upstream, routes, rules, port, metrics, drainDelay, shutdownTimeout, redis, reloadInterval)" $k) -}}
{{- end -}}
{{- if has $k (list "AUTHPROXY_CLIENT_SECRET" "AUTH0_CLIENT_SECRET" "AUTHPROXY_COOKIE_SECRET" "AUTHPROXY_REDIS_URL" "AUTHPROXY_REDIS_PASSWORD" "AUTHPROXY_ADMIN_TOKEN") -}}
{{- $problems = append $problems (printf "config.%s is a secret: put it in the Secret, not the ConfigMap" $k) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.redis.enabled (not .Values.secret.existingSecret) (not .Values.redis.url) -}}
{{- $problems = append $problems "redis.enabled needs redis.url, or a key redis.urlKey in secret.existingSecret" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- $problems = append $problems "metrics.serviceMonitor.enabled needs metrics.enabled" -}}
{{- end -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.port)) -}}
{{- $problems = append $problems "metrics.port must differ from port: metrics stay off the public listener" -}}
{{- end -}}
{{- if $problems -}}
{{- fail (printf "\n- %s" (join "\n- " $problems)) -}}
{{- end -}}
{{- end -}}
