{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "aiaas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Truncated to 52 characters so that "<fullname>-streamer"
and the other suffixed names still fit in 63.
*/}}
{{- define "aiaas.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aiaas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "aiaas.labels" -}}
helm.sh/chart: {{ include "aiaas.chart" . }}
{{ include "aiaas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aiaas
{{- end }}

{{/*
Labels shared by every pod of the release (NetworkPolicies select on these).
*/}}
{{- define "aiaas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aiaas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component. Called with (dict "root" $ "role" "api").
*/}}
{{- define "aiaas.componentLabels" -}}
{{ include "aiaas.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "aiaas.componentSelectorLabels" -}}
{{ include "aiaas.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "aiaas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aiaas.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aiaas.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the secret settings; installing without one fails.
*/}}
{{- define "aiaas.secretName" -}}
{{- required "secret.existingSecret is required: create a Secret holding AIAAS_DATABASE_URL, AIAAS_REDIS_URL, AIAAS_AMQP_URL (and AIAAS_BOOTSTRAP_ADMIN_PASSWORD) in the release namespace and set secret.existingSecret to its name" .Values.secret.existingSecret }}
{{- end }}

{{/*
Non-secret environment, as a YAML map of strings: config.env plus the values the
chart owns. Rejects keys that belong in the Secret.
*/}}
{{- define "aiaas.configData" -}}
{{- $owned := list "AIAAS_HOST" "AIAAS_API_PORT" "AIAAS_STREAMER_PORT" "AIAAS_WORKER_PORT" "PROMETHEUS_MULTIPROC_DIR" }}
{{- $secret := list "AIAAS_REDIS_URL" "AIAAS_AMQP_URL" "AIAAS_BOOTSTRAP_ADMIN_PASSWORD" }}
{{- $data := dict }}
{{- range $key, $value := .Values.config.env }}
{{- if has $key $owned }}
{{- fail (printf "config.env.%s is set by the chart (use api.port / streamer.port / worker.port); remove it from config.env" $key) }}
{{- end }}
{{- if or (has $key $secret) (hasSuffix "_DATABASE_URL" $key) (regexMatch "(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)$" $key) }}
{{- fail (printf "config.env.%s looks like a secret: put it in the Secret named by secret.existingSecret, not in values" $key) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $data $key (toString $value) }}
{{- end }}
{{- end }}
{{- $_ := set $data "AIAAS_HOST" "0.0.0.0" }}
{{- $_ := set $data "AIAAS_API_PORT" (toString .Values.api.port) }}
{{- $_ := set $data "AIAAS_STREAMER_PORT" (toString .Values.streamer.port) }}
{{- $_ := set $data "AIAAS_WORKER_PORT" (toString .Values.worker.port) }}
{{- $_ := set $data "PROMETHEUS_MULTIPROC_DIR" "/tmp/prom" }}
{{- toYaml $data }}
{{- end }}

{{/*
Pod and container security contexts, volumes and mounts shared by the
Deployments and the migration Job.
*/}}
{{- define "aiaas.volumes" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
- name: prometheus-multiproc
  emptyDir:
    {{- with .Values.prometheusMultiprocVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}

{{- define "aiaas.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: prometheus-multiproc
  mountPath: /tmp/prom
{{- end }}

{{/*
envFrom of every aiaas container: the Secret last, so it wins over the ConfigMap
and extraEnvFrom on a duplicate key.
*/}}
{{- define "aiaas.secretEnvFrom" -}}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
- secretRef:
    name: {{ include "aiaas.secretName" . }}
{{- end }}

{{/*
Fails when a role's grace period cannot cover the preStop sleep plus the
server's own drain time. Called with (dict "root" $ "role" "api").
*/}}
{{- define "aiaas.checkGracePeriod" -}}
{{- $values := index .root.Values .role }}
{{- $drain := dig "AIAAS_GRACEFUL_SHUTDOWN_SECONDS" "" (.root.Values.config.env | default dict) | default 30 | float64 }}
{{- $needed := addf $drain (.root.Values.preStopSleepSeconds | default 0 | float64) }}
{{- if lt (float64 $values.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must be at least AIAAS_GRACEFUL_SHUTDOWN_SECONDS + preStopSleepSeconds (%v)" .role $values.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- end }}
