############################################################################
# Naming
############################################################################

variable "name" {
  description = "Prefix of every resource name (and of the Secrets Manager entry, <name>/<environment>)."
  type        = string
  default     = "aiaas"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name))
    error_message = "name must be 3-16 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name, e.g. production or staging; part of resource names and of the Secrets Manager entry (aiaas/production)."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}[a-z0-9]$", var.environment))
    error_message = "environment must be 2-16 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}

############################################################################
# Network
############################################################################

variable "vpc_cidr" {
  description = "CIDR of the new VPC, /16 to /20. Each AZ gets a node subnet of 1/8 of it, a public (load balancer) subnet and a data-store subnet of 1/256 each."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR between /16 and /20."
  }
}

variable "availability_zone_count" {
  description = "How many availability zones the subnets, the node group and the data stores span (2 or 3); ignored when availability_zones is set."
  type        = number
  default     = 3

  validation {
    condition     = contains([2, 3], var.availability_zone_count)
    error_message = "availability_zone_count must be 2 or 3."
  }
}

variable "availability_zones" {
  description = "Names of the AZs to use, e.g. [\"eu-west-1a\", \"eu-west-1b\", \"eu-west-1c\"]; empty takes the first availability_zone_count of the region."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3 && length(distinct(var.availability_zones)) == length(var.availability_zones))
    error_message = "availability_zones must be empty or 2-3 distinct AZ names."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheaper, one AZ is a single point of failure for egress) instead of one per AZ."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Days the VPC flow logs and the EKS control-plane logs are kept in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, 400, ...)."
  }
}

############################################################################
# EKS
############################################################################

variable "kubernetes_version" {
  description = "Kubernetes version of the EKS control plane and the node group (the chart needs >= 1.25 and is tested against 1.33)."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.33."
  }
}

variable "cluster_endpoint_public_access" {
  description = "Expose the Kubernetes API on a public endpoint (restricted to cluster_endpoint_public_access_cidrs). false: reachable only from inside the VPC (then run Terraform from there)."
  type        = bool
  default     = true
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint, e.g. [\"203.0.113.7/32\"] for the machine running Terraform. Never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.cluster_endpoint_public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "cluster_endpoint_public_access_cidrs must be IPv4 CIDRs, and none of them 0.0.0.0/0."
  }
}

variable "cluster_admin_principal_arns" {
  description = "IAM role or user ARNs given cluster-admin access (EKS access entries) besides the identity that creates the cluster, e.g. a CI role."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", a))])
    error_message = "cluster_admin_principal_arns must be IAM role or user ARNs."
  }
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group (x86_64; the image is built for amd64)."
  type        = list(string)
  default     = ["m6i.large"]

  validation {
    condition     = length(var.node_instance_types) > 0
    error_message = "node_instance_types needs at least one instance type."
  }
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT capacity for the node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_group_size" {
  description = "Node group sizes: min, desired (initial only; autoscalers may change it) and max number of nodes."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = { min = 2, desired = 3, max = 6 }

  validation {
    condition     = var.node_group_size.min >= 1 && var.node_group_size.min <= var.node_group_size.desired && var.node_group_size.desired <= var.node_group_size.max
    error_message = "node_group_size must satisfy 1 <= min <= desired <= max."
  }
}

variable "node_disk_size_gib" {
  description = "Size of each node's encrypted root volume in GiB (holds the images, about 1 GiB for aiaas with its embedded model)."
  type        = number
  default     = 50

  validation {
    condition     = var.node_disk_size_gib >= 20 && var.node_disk_size_gib <= 1000
    error_message = "node_disk_size_gib must be between 20 and 1000."
  }
}

variable "external_secrets_namespace" {
  description = "Namespace of the External Secrets Operator, whose service account may assume the IRSA role that reads aiaas's secret."
  type        = string
  default     = "external-secrets"
}

variable "external_secrets_service_account" {
  description = "Name of the External Secrets Operator controller's service account (the chart's default is external-secrets)."
  type        = string
  default     = "external-secrets"
}

############################################################################
# PostgreSQL (RDS)
############################################################################

variable "postgres_engine_version" {
  description = "RDS PostgreSQL engine version: a major version (\"16\", RDS picks the minor) or major.minor. The parameter group family follows the major version."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[4-9](\\.[0-9]+)?$", var.postgres_engine_version))
    error_message = "postgres_engine_version must be PostgreSQL 14 or later, e.g. 16 or 16.9."
  }
}

variable "postgres_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m7g.large"

  validation {
    condition     = startswith(var.postgres_instance_class, "db.")
    error_message = "postgres_instance_class must be an RDS class such as db.m7g.large."
  }
}

variable "postgres_allocated_storage_gib" {
  description = "Initial storage of the database in GiB (gp3)."
  type        = number
  default     = 50

  validation {
    condition     = var.postgres_allocated_storage_gib >= 20
    error_message = "postgres_allocated_storage_gib must be at least 20."
  }
}

variable "postgres_max_allocated_storage_gib" {
  description = "Upper bound of storage autoscaling in GiB (0 disables autoscaling)."
  type        = number
  default     = 500
}

variable "postgres_multi_az" {
  description = "Run a synchronous standby in a second AZ (automatic failover)."
  type        = bool
  default     = true
}

variable "postgres_backup_retention_days" {
  description = "Days of automated backups and point-in-time recovery."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days must be between 7 and 35."
  }
}

variable "postgres_deletion_protection" {
  description = "Refuse to delete the database (set false, apply, then destroy, to remove it on purpose)."
  type        = bool
  default     = true
}

############################################################################
# Redis (ElastiCache)
############################################################################

variable "redis_engine_version" {
  description = "ElastiCache Redis OSS engine version (7.x; the parameter group is default.redis7)."
  type        = string
  default     = "7.1"

  validation {
    condition     = can(regex("^7\\.[0-9]+$", var.redis_engine_version))
    error_message = "redis_engine_version must be a Redis OSS 7 version such as 7.1."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.m7g.large"

  validation {
    condition     = startswith(var.redis_node_type, "cache.")
    error_message = "redis_node_type must be an ElastiCache node type such as cache.m7g.large."
  }
}

variable "redis_num_cache_clusters" {
  description = "Nodes of the replication group (one primary, the rest replicas in other AZs). 2 or more enables automatic failover and Multi-AZ."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_num_cache_clusters >= 1 && var.redis_num_cache_clusters <= 6
    error_message = "redis_num_cache_clusters must be between 1 and 6."
  }
}

############################################################################
# RabbitMQ (Amazon MQ)
############################################################################

variable "rabbitmq_engine_version" {
  description = "Amazon MQ for RabbitMQ engine version (major.minor; minor upgrades are automatic)."
  type        = string
  default     = "3.13"

  validation {
    condition     = can(regex("^[3-9]\\.[0-9]+$", var.rabbitmq_engine_version))
    error_message = "rabbitmq_engine_version must look like 3.13."
  }
}

variable "rabbitmq_instance_type" {
  description = "Amazon MQ broker instance type (mq.t3.micro works only with SINGLE_INSTANCE)."
  type        = string
  default     = "mq.m5.large"

  validation {
    condition     = startswith(var.rabbitmq_instance_type, "mq.")
    error_message = "rabbitmq_instance_type must be an Amazon MQ type such as mq.m5.large."
  }
}

variable "rabbitmq_deployment_mode" {
  description = "SINGLE_INSTANCE (one broker in one AZ) or CLUSTER_MULTI_AZ (three nodes across AZs behind one endpoint)."
  type        = string
  default     = "CLUSTER_MULTI_AZ"

  validation {
    condition     = contains(["SINGLE_INSTANCE", "CLUSTER_MULTI_AZ"], var.rabbitmq_deployment_mode)
    error_message = "rabbitmq_deployment_mode must be SINGLE_INSTANCE or CLUSTER_MULTI_AZ."
  }
}

############################################################################
# Secrets
############################################################################

variable "secret_recovery_window_days" {
  description = "Days a deleted Secrets Manager entry can still be restored (0 deletes at once; then the same name can be reused immediately)."
  type        = number
  default     = 30

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}
