{{/*
A Service. Called with (dict "root" $ "role" "api"): the role's Service, port "http" to the role's port.
Optional keys: "component" (name suffix and component label, default the role), "values" (holding
service.type/annotations, default .Values.<role>), "ports" (a list of {name, port}, default one "http"
of values.service.port) and "selector" (default the component's selector labels).
*/}}
{{- define "aiaas.service" -}}
{{- $root := .root }}
{{- $component := .component | default .role }}
{{- $values := .values | default (index $root.Values .role) }}
{{- $ctx := dict "root" $root "role" $component }}
{{- $ports := .ports | default (list (dict "name" "http" "port" $values.service.port)) }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "aiaas.componentName" (dict "root" $root "component" $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "aiaas.componentLabels" $ctx | nindent 4 }}
  {{- with $values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $values.service.type }}
  selector:
    {{- if .selector }}
    {{- toYaml .selector | nindent 4 }}
    {{- else }}
    {{- include "aiaas.componentSelectorLabels" $ctx | nindent 4 }}
    {{- end }}
  ports:
    {{- range $ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      protocol: TCP
    {{- end }}
{{- end }}
