############################################################################
# Cluster access
############################################################################

variable "kubeconfig_path" {
  description = "Path of the kubeconfig file used by the kubernetes and helm providers."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context to use; null uses the file's current context."
  type        = string
  default     = null
}

variable "kube_host" {
  description = "URL of the Kubernetes API. When set, the providers use it with kube_cluster_ca_certificate and kube_exec instead of the kubeconfig (for a cluster created in the same apply)."
  type        = string
  default     = null
}

variable "kube_cluster_ca_certificate" {
  description = "PEM CA certificate of the Kubernetes API at kube_host."
  type        = string
  default     = null
}

variable "kube_exec" {
  description = "Credential plugin the providers run for a token when kube_host is set, e.g. { api_version = \"client.authentication.k8s.io/v1beta1\", command = \"aws\", args = [\"eks\", \"get-token\", \"--cluster-name\", \"<name>\"] }."
  type = object({
    api_version = string
    command     = string
    args        = optional(list(string), [])
    env         = optional(map(string), {})
  })
  default = null
}

variable "helm_manifest_diff" {
  description = "Show the chart's rendered manifests in plans (the helm provider's manifest experiment). Needs a reachable cluster at plan time: set false when the cluster is created in the same apply."
  type        = bool
  default     = true
}

############################################################################
# Namespace and release
############################################################################

variable "namespace" {
  description = "Namespace aiaas is installed into."
  type        = string
  default     = "aiaas"
}

variable "create_namespace" {
  description = "Create the namespace (false: it must already exist)."
  type        = bool
  default     = true
}

variable "namespace_labels" {
  description = "Labels of the created namespace. The default enforces the Pod Security Standard \"restricted\", which the chart satisfies."
  type        = map(string)
  default = {
    "pod-security.kubernetes.io/enforce" = "restricted"
    "pod-security.kubernetes.io/audit"   = "restricted"
    "pod-security.kubernetes.io/warn"    = "restricted"
  }
}

variable "release_name" {
  description = "Helm release name (at most 53 characters)."
  type        = string
  default     = "aiaas"

  validation {
    condition     = length(var.release_name) <= 53 && can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 53 characters."
  }
}

variable "chart_path" {
  description = "Path of the aiaas chart; null uses the chart of this repository (../charts/aiaas)."
  type        = string
  default     = null
}

variable "helm_timeout_seconds" {
  description = "How long Helm waits for the migration Job and for the Deployments to become ready."
  type        = number
  default     = 900
}

variable "atomic" {
  description = "Roll the release back when an install or upgrade fails (a failed migration Job included)."
  type        = bool
  default     = true
}

############################################################################
# Image
############################################################################

variable "image_repository" {
  description = "Repository of the aiaas image built from the repository's Dockerfile, e.g. <registry>/<project>/aiaas."
  type        = string
}

variable "image_tag" {
  description = "Image tag; null uses the chart's appVersion."
  type        = string
  default     = null
}

variable "image_digest" {
  description = "Image digest (sha256:...); when set the image is pulled by digest and image_tag is ignored."
  type        = string
  default     = null

  validation {
    condition     = var.image_digest == null || can(regex("^sha256:[a-f0-9]{64}$", var.image_digest))
    error_message = "image_digest must look like sha256:<64 hex digits>."
  }
}

variable "image_pull_secret_names" {
  description = "Names of existing docker-registry Secrets in the namespace used to pull the image."
  type        = list(string)
  default     = []
}

############################################################################
# Secret settings. Values come from a *.tfvars file kept out of Git, from
# TF_VAR_* environment variables or from your secret manager's provider, at
# apply time. They are stored in the Terraform state: keep the state in an
# encrypted backend with restricted access, or set create_secret = false and
# manage the Secret outside Terraform (External Secrets Operator, ...).
############################################################################

variable "create_secret" {
  description = "Create the Secret holding the secret AIAAS_* variables from the variables below. false: use existing_secret_name."
  type        = bool
  default     = true
}

variable "secret_name" {
  description = "Name of the Secret created when create_secret is true."
  type        = string
  default     = "aiaas-env"
}

variable "existing_secret_name" {
  description = "Name of a Secret managed outside Terraform (used when create_secret is false). Its keys are the variable names, e.g. AIAAS_DATABASE_URL."
  type        = string
  default     = null
}

variable "database_url" {
  description = "AIAAS_DATABASE_URL: postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB." # pragma: allowlist secret
  type        = string
  default     = null
  sensitive   = true
}

variable "redis_url" {
  description = "AIAAS_REDIS_URL: redis://[:PASSWORD@]HOST:6379/0 or rediss://..."
  type        = string
  default     = null
  sensitive   = true
}

variable "amqp_url" {
  description = "AIAAS_AMQP_URL: amqp://USER:PASSWORD@HOST:5672/VHOST or amqps://..." # pragma: allowlist secret
  type        = string
  default     = null
  sensitive   = true
}

variable "bootstrap_admin_password" {
  description = "AIAAS_BOOTSTRAP_ADMIN_PASSWORD, read by `aiaas bootstrap`. Optional."
  type        = string
  default     = null
  sensitive   = true
}

variable "auth_database_url" {
  description = "AIAAS_AUTH_DATABASE_URL: optional database of the auth context (defaults to database_url)."
  type        = string
  default     = null
  sensitive   = true
}

variable "orgs_database_url" {
  description = "AIAAS_ORGS_DATABASE_URL: optional database of the orgs context."
  type        = string
  default     = null
  sensitive   = true
}

variable "inference_database_url" {
  description = "AIAAS_INFERENCE_DATABASE_URL: optional database of the inference context."
  type        = string
  default     = null
  sensitive   = true
}

variable "usage_database_url" {
  description = "AIAAS_USAGE_DATABASE_URL: optional database of the usage context."
  type        = string
  default     = null
  sensitive   = true
}

variable "analytics_database_url" {
  description = "AIAAS_ANALYTICS_DATABASE_URL: optional database of the analytics context."
  type        = string
  default     = null
  sensitive   = true
}

variable "extra_secret_env" {
  description = "More secret environment variables for every aiaas container (e.g. upstream provider keys), name => value."
  type        = map(string)
  default     = {}
  sensitive   = true
}

############################################################################
# Non-secret configuration and scaling
############################################################################

variable "config_env" {
  description = "Non-secret AIAAS_* settings, merged over the chart's config.env (e.g. AIAAS_LOG_LEVEL, AIAAS_OTEL_EXPORTER_OTLP_ENDPOINT)."
  type        = map(string)
  default     = {}
}

variable "api_replicas" {
  description = "Replicas of the api role when it is not autoscaled."
  type        = number
  default     = 2
}

variable "streamer_replicas" {
  description = "Replicas of the streamer role when it is not autoscaled."
  type        = number
  default     = 2
}

variable "worker_replicas" {
  description = "Replicas of the worker role."
  type        = number
  default     = 1
}

variable "api_autoscaling" {
  description = "HorizontalPodAutoscaler of the api role."
  type = object({
    enabled                        = bool
    min_replicas                   = optional(number, 2)
    max_replicas                   = optional(number, 10)
    target_cpu_utilization_percent = optional(number, 70)
  })
  default = { enabled = false }
}

variable "streamer_autoscaling" {
  description = "HorizontalPodAutoscaler of the streamer role."
  type = object({
    enabled                        = bool
    min_replicas                   = optional(number, 2)
    max_replicas                   = optional(number, 10)
    target_cpu_utilization_percent = optional(number, 70)
  })
  default = { enabled = false }
}

############################################################################
# Exposure and observability
############################################################################

variable "ingress_host" {
  description = "Public host name routed to the api role; null disables the Ingress."
  type        = string
  default     = null
}

variable "streamer_ingress_host" {
  description = "Optional separate public host name routed to the streamer role (needs ingress_host)."
  type        = string
  default     = null
}

variable "ingress_class_name" {
  description = "IngressClass of the Ingress; null uses the cluster's default class."
  type        = string
  default     = null
}

variable "cert_manager_cluster_issuer" {
  description = "cert-manager ClusterIssuer that issues the Ingress certificate; null serves the Ingress without TLS."
  type        = string
  default     = null
}

variable "ingress_controller_namespace" {
  description = "Namespace of the ingress controller, allowed by the NetworkPolicy to reach api and streamer."
  type        = string
  default     = "ingress-nginx"
}

variable "monitoring_namespace" {
  description = "Namespace of Prometheus, allowed by the NetworkPolicy to scrape /metrics."
  type        = string
  default     = "monitoring"
}

variable "network_policy_enabled" {
  description = "Create the chart's default-deny and allow NetworkPolicies."
  type        = bool
  default     = true
}

variable "service_monitor" {
  description = "Prometheus Operator ServiceMonitor (needs its CRDs in the cluster). labels: what your Prometheus selects ServiceMonitors by."
  type = object({
    enabled = bool
    labels  = optional(map(string), {})
  })
  default = { enabled = false }
}

variable "extra_values" {
  description = "Further Helm values files as YAML strings, applied after the values built here (e.g. file(\"values-prod.yaml\")). Never put secrets in them."
  type        = list(string)
  default     = []
}
