{{/*
One aiaas workload as a Deployment. Called with (dict "root" $ "role" "api"), where role is what it runs
(`aiaas serve --role <role>`: api, streamer, worker or all). Optional keys, for the canary track:
"component" (its name suffix and component label, default the role), "values" (default .Values.<role>),
"image" (default the chart's image) and "podLabels" (more labels on its pods, not in its selector).
*/}}
{{- define "aiaas.deployment" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $component := .component | default $role }}
{{- $values := .values | default (index $root.Values $role) }}
{{- $image := .image | default (include "aiaas.image" $root) }}
{{- $ctx := dict "root" $root "role" $component }}
{{- include "aiaas.checkGracePeriod" (dict "root" $root "name" (ternary "single" $role (eq $role "all")) "values" $values) }}
{{- $probes := mustMergeOverwrite (deepCopy $root.Values.probes) ($values.probes | default dict) }}
{{- $autoscaling := $values.autoscaling | default dict }}
{{- /* Role all listens on the three roles' ports; its readiness is the streamer's, which also waits for
the embedded model to load and warm, so no request reaches a pod whose model is still loading. */}}
{{- $ports := list (dict "name" "http" "port" $values.port) }}
{{- $readinessPort := "http" }}
{{- if eq $role "all" }}
{{- $ports = list (dict "name" "http" "port" $root.Values.api.port) (dict "name" "inference" "port" $root.Values.streamer.port) (dict "name" "worker" "port" $root.Values.worker.port) }}
{{- $readinessPort = "inference" }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "aiaas.componentName" (dict "root" $root "component" $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "aiaas.componentLabels" $ctx | nindent 4 }}
  {{- with include "aiaas.checkovSkips" (dict "root" $root "image" $image) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- if not $autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with $values.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "aiaas.componentSelectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "aiaas.componentSelectorLabels" $ctx | nindent 8 }}
        {{- with .podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "aiaas.configData" $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "aiaas.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      # Service links would inject variables such as AIAAS_API_PORT=tcp://... for
      # a Service named "aiaas-api"; aiaas is configured only by its own variables.
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- with $root.Values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $role }}
          image: {{ $image | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - serve
            - --role
            - {{ $role }}
            - --workers
            - {{ $values.workers | default 1 | quote }}
          ports:
            {{- range $ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "aiaas.fullname" $root }}
            {{- include "aiaas.secretEnvFrom" $root | nindent 12 }}
          {{- with $values.extraEnv }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- if $probes.startup.enabled }}
          startupProbe:
            httpGet:
              path: {{ $probes.startup.path }}
              port: http
            periodSeconds: {{ $probes.startup.periodSeconds }}
            timeoutSeconds: {{ $probes.startup.timeoutSeconds }}
            failureThreshold: {{ $probes.startup.failureThreshold }}
          {{- end }}
          livenessProbe:
            httpGet:
              path: {{ $probes.liveness.path }}
              port: http
            periodSeconds: {{ $probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $probes.liveness.failureThreshold }}
          readinessProbe:
            httpGet:
              path: {{ $probes.readiness.path }}
              port: {{ $readinessPort }}
            periodSeconds: {{ $probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $probes.readiness.failureThreshold }}
            successThreshold: {{ $probes.readiness.successThreshold }}
          {{- if gt (int $root.Values.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "{{ $root.Values.preStopSleepSeconds }}"]
          {{- end }}
          {{- with $values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $root.Values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            {{- include "aiaas.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "aiaas.volumes" $root | nindent 8 }}
      {{- with ($values.nodeSelector | default $root.Values.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with ($values.tolerations | default $root.Values.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with ($values.affinity | default $root.Values.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with ($values.topologySpreadConstraints | default $root.Values.topologySpreadConstraints) }}
      topologySpreadConstraints:
        {{- range . }}
        - {{- toYaml (omit . "labelSelector") | nindent 10 }}
          labelSelector:
            {{- if .labelSelector }}
            {{- toYaml .labelSelector | nindent 12 }}
            {{- else }}
            matchLabels:
              {{- include "aiaas.componentSelectorLabels" $ctx | nindent 14 }}
            {{- end }}
        {{- end }}
      {{- end }}
{{- end }}
