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

{{/*
Name of one component's objects, "<fullname>-<component>", cut to the 63 characters of a Service name
(the canary's longer suffixes can reach past them). Called with (dict "root" $ "component" "api").
*/}}
{{- define "aiaas.componentName" -}}
{{- printf "%s-%s" (include "aiaas.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
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
{{- include "aiaas.imageRef" (dict "root" . "image" .Values.image) }}
{{- end }}

{{/*
An image reference from image.repository and (dict "root" $ "image" {tag, digest}): the digest wins,
an empty tag is the chart's appVersion.
*/}}
{{- define "aiaas.imageRef" -}}
{{- $image := .image | default dict }}
{{- if $image.digest }}
{{- printf "%s@%s" .root.Values.image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" .root.Values.image.repository ($image.tag | default .root.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" when the release runs the three roles as Deployments of their own (mode split), "" in mode single.
*/}}
{{- define "aiaas.split" -}}
{{- if eq (.Values.mode | default "split") "split" }}true{{ end }}
{{- end }}

{{/*
"true" when the streamer's canary track is rendered (split mode only: single mode has no streamer of its own).
*/}}
{{- define "aiaas.canary" -}}
{{- if and (include "aiaas.split" .) .Values.streamer.enabled .Values.streamer.canary.enabled }}true{{ end }}
{{- end }}

{{/*
The canary's image: its own tag or digest, required (a canary of the stable image tests nothing).
*/}}
{{- define "aiaas.canaryImage" -}}
{{- $image := .Values.streamer.canary.image | default dict }}
{{- if not (or $image.tag $image.digest) }}
{{- fail "streamer.canary.enabled is true but streamer.canary.image has neither tag nor digest: name the release under test" }}
{{- end }}
{{- include "aiaas.imageRef" (dict "root" . "image" $image) }}
{{- end }}

{{/*
The image the migration Job runs: migrations.image when set, else the newest code the release runs
(the canary's while there is one: its migrations must run before its pods start, and expand/contract
keeps the stable pods working on the expanded schema), else image.
*/}}
{{- define "aiaas.migrationImage" -}}
{{- $image := .Values.migrations.image | default dict }}
{{- if or $image.tag $image.digest }}
{{- include "aiaas.imageRef" (dict "root" . "image" $image) }}
{{- else if include "aiaas.canary" . }}
{{- include "aiaas.canaryImage" . }}
{{- else }}
{{- include "aiaas.image" . }}
{{- end }}
{{- end }}

{{/*
Label of every pod that serves the streamer's traffic, stable and canary alike: the pool Service of a
replica-weighted canary selects on it. The stable streamer carries it whether or not a canary runs, so
turning the canary on or off never changes the stable Deployment (its selector is immutable, and a
changed template would restart it).
*/}}
{{- define "aiaas.streamerPoolLabels" -}}
aiaas.io/pool: streamer
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
Fails when a workload's grace period cannot cover the preStop sleep plus the server's own drain time.
Called with (dict "root" $ "name" "api" "values" .Values.api).
*/}}
{{- define "aiaas.checkGracePeriod" -}}
{{- $values := .values }}
{{- $drain := dig "AIAAS_GRACEFUL_SHUTDOWN_SECONDS" "" (.root.Values.config.env | default dict) | default 30 | float64 }}
{{- $needed := addf $drain (.root.Values.preStopSleepSeconds | default 0 | float64) }}
{{- if lt (float64 $values.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must be at least AIAAS_GRACEFUL_SHUTDOWN_SECONDS + preStopSleepSeconds (%v)" .name $values.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- end }}

{{/*
The checkov findings accepted on a workload (Deployment or Job), each as a `checkov.io/skipN:
CHECK=reason` annotation, the form checkov reads a suppression in (no "=" in a reason). .ci/checkov runs
checkov over the rendered chart. Called with (dict "root" $ "image" <the workload's image reference>);
a finding that a value can fix is suppressed only while that value leaves it open.
*/}}
{{- define "aiaas.checkovSkips" -}}
{{- $skips := list }}
{{- $skips = append $skips "CKV_K8S_11=no CPU limit on purpose: a CFS quota throttles streams and the embedded model in bursts; CPU requests size the scheduling and <role>.resources can add a limit" }}
{{- $skips = append $skips "CKV_K8S_35=aiaas reads its settings only from AIAAS_* environment variables; the Secret is loaded with envFrom and never rendered into the manifest" }}
{{- if not (contains "@sha256:" .image) }}
{{- $skips = append $skips "CKV_K8S_43=pinned by a tag until image.digest (streamer.canary.image.digest) is set; production values should pin the digest" }}
{{- end }}
{{- if ne .root.Values.image.pullPolicy "Always" }}
{{- $skips = append $skips "CKV_K8S_15=image.pullPolicy IfNotPresent by default: with a digest it runs exactly that image and a pod start does not depend on the registry; set Always where tags are reused" }}
{{- end }}
{{- range $i, $skip := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end }}
