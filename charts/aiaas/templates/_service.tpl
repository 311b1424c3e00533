{{/*
The Service of one role. Called with (dict "root" $ "role" "api").
*/}}
{{- define "aiaas.service" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $values := index $root.Values $role }}
{{- $ctx := dict "root" $root "role" $role }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "aiaas.fullname" $root }}-{{ $role }}
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
    {{- include "aiaas.componentSelectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ $values.service.port }}
      targetPort: http
      protocol: TCP
{{- end }}
