############################################################################
# Where
############################################################################

variable "region" {
  description = "AWS region of the whole install, e.g. eu-west-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Prefix of every AWS resource name."
  type        = string
  default     = "aiaas"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name))
    error_message = "name must be 3-16 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (production, staging, ...): part of resource names and of the Secrets Manager entry <name>/<environment>."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}[a-z0-9]$", var.environment))
    error_message = "environment must be 2-16 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags on every AWS resource (added to Project, Environment and ManagedBy)."
  type        = map(string)
  default     = {}
}

############################################################################
# AWS infrastructure (passed to modules/aws; see its variables for more)
############################################################################

variable "availability_zone_count" {
  description = "Availability zones the VPC, the nodes and the data stores span (2 or 3)."
  type        = number
  default     = 3

  validation {
    condition     = contains([2, 3], var.availability_zone_count)
    error_message = "availability_zone_count must be 2 or 3."
  }
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs that may reach the Kubernetes API, at least the address of the machine running Terraform as a /32 (curl -s https://checkip.amazonaws.com). Never 0.0.0.0/0."
  type        = list(string)

  validation {
    condition     = length(var.cluster_endpoint_public_access_cidrs) > 0 && alltrue([for c in var.cluster_endpoint_public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "cluster_endpoint_public_access_cidrs needs at least one IPv4 CIDR, and none may be 0.0.0.0/0."
  }
}

variable "cluster_admin_principal_arns" {
  description = "More IAM roles or users with cluster-admin access (the identity running the first apply has it already), e.g. a CI role."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "EC2 instance types of the node group (x86_64)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "postgres_multi_az" {
  description = "RDS with a standby in a second AZ."
  type        = bool
  default     = true
}

variable "postgres_deletion_protection" {
  description = "Refuse to delete the database; set false and apply before a deliberate terraform destroy."
  type        = bool
  default     = true
}

variable "redis_num_cache_clusters" {
  description = "ElastiCache nodes (2 or more: automatic failover across AZs)."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_num_cache_clusters >= 1 && var.redis_num_cache_clusters <= 6
    error_message = "redis_num_cache_clusters must be between 1 and 6."
  }
}

variable "rabbitmq_deployment_mode" {
  description = "SINGLE_INSTANCE or CLUSTER_MULTI_AZ Amazon MQ broker."
  type        = string
  default     = "CLUSTER_MULTI_AZ"

  validation {
    condition     = contains(["SINGLE_INSTANCE", "CLUSTER_MULTI_AZ"], var.rabbitmq_deployment_mode)
    error_message = "rabbitmq_deployment_mode must be SINGLE_INSTANCE or CLUSTER_MULTI_AZ."
  }
}

############################################################################
# In the cluster
############################################################################

variable "external_secrets_chart_version" {
  description = "Version of the External Secrets Operator chart (charts.external-secrets.io); it must serve the external-secrets.io/v1 API (0.17 or later)."
  type        = string
  default     = "1.0.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.external_secrets_chart_version))
    error_message = "external_secrets_chart_version must be a chart version such as 1.0.0."
  }
}

variable "namespace" {
  description = "Namespace aiaas is installed into (created, labelled for the Pod Security Standard restricted)."
  type        = string
  default     = "aiaas"
}

variable "release_name" {
  description = "Name of aiaas's Helm release."
  type        = string
  default     = "aiaas"
}

variable "secret_name" {
  description = "Name of the Kubernetes Secret the External Secrets Operator creates from the Secrets Manager entry and every aiaas pod reads."
  type        = string
  default     = "aiaas-env"
}

variable "image_repository" {
  description = "Repository of the aiaas image, e.g. the ECR repository_url output of ../aws-bootstrap (<account>.dkr.ecr.<region>.amazonaws.com/aiaas)."
  type        = string

  validation {
    condition     = length(var.image_repository) > 0 && !strcontains(var.image_repository, ":")
    error_message = "image_repository is the repository without a tag (set image_tag for that)."
  }
}

variable "image_tag" {
  description = "Tag of the aiaas image pushed to image_repository, e.g. 0.1.0."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid, immutable image tag (not latest)."
  }
}

variable "config_env" {
  description = "Non-secret AIAAS_* settings for the chart (e.g. AIAAS_LOG_LEVEL); secrets come only from the Secrets Manager entry."
  type        = map(string)
  default     = {}
}

variable "api_replicas" {
  description = "Replicas of the api role."
  type        = number
  default     = 2
}

variable "streamer_replicas" {
  description = "Replicas of the streamer role."
  type        = number
  default     = 2
}

variable "worker_replicas" {
  description = "Replicas of the worker role."
  type        = number
  default     = 2
}

variable "ingress_host" {
  description = "Public host name routed to the api role; null installs no Ingress (reach aiaas with kubectl port-forward until an ingress controller is installed)."
  type        = string
  default     = null
}

variable "ingress_class_name" {
  description = "IngressClass of the Ingress when ingress_host is set."
  type        = string
  default     = null
}
