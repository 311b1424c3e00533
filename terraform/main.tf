locals {
  chart_path = coalesce(var.chart_path, "${path.module}/../charts/aiaas")

  # The chart's "aiaas.fullname": the release name when it contains "aiaas",
  # else "<release>-aiaas", cut to 52 characters.
  fullname = trimsuffix(substr(strcontains(var.release_name, "aiaas") ? var.release_name : "${var.release_name}-aiaas", 0, 52), "-")

  namespace = var.create_namespace ? kubernetes_namespace_v1.aiaas[0].metadata[0].name : var.namespace

  # Secret environment: only the variables that were given.
  secret_env_all = merge(
    {
      AIAAS_DATABASE_URL             = var.database_url
      AIAAS_REDIS_URL                = var.redis_url
      AIAAS_AMQP_URL                 = var.amqp_url
      AIAAS_BOOTSTRAP_ADMIN_PASSWORD = var.bootstrap_admin_password
      AIAAS_AUTH_DATABASE_URL        = var.auth_database_url
      AIAAS_ORGS_DATABASE_URL        = var.orgs_database_url
      AIAAS_INFERENCE_DATABASE_URL   = var.inference_database_url
      AIAAS_USAGE_DATABASE_URL       = var.usage_database_url
      AIAAS_ANALYTICS_DATABASE_URL   = var.analytics_database_url
    },
    var.extra_secret_env,
  )
  secret_env = { for name, value in local.secret_env_all : name => value if value != null }

  secret_name = var.create_secret ? kubernetes_secret_v1.aiaas_env[0].metadata[0].name : var.existing_secret_name

  image = { for k, v in {
    repository = var.image_repository
    tag        = var.image_tag
    digest     = var.image_digest
  } : k => v if v != null }

  ingress_hosts = concat(
    var.ingress_host == null ? [] : [
      { host = var.ingress_host, paths = [{ path = "/", pathType = "Prefix", role = "api" }] }
    ],
    var.streamer_ingress_host == null ? [] : [
      { host = var.streamer_ingress_host, paths = [{ path = "/", pathType = "Prefix", role = "streamer" }] }
    ],
  )

  chart_values = {
    image            = local.image
    imagePullSecrets = [for name in var.image_pull_secret_names : { name = name }]

    secret = { existingSecret = local.secret_name }

    config = { env = var.config_env }

    # Rolls every pod when Terraform changes the Secret (the resourceVersion
    # is not secret); pods do not reread a changed Secret on their own.
    podAnnotations = var.create_secret ? {
      "aiaas/secret-resource-version" = kubernetes_secret_v1.aiaas_env[0].metadata[0].resource_version
    } : {}

    api = {
      replicaCount = var.api_replicas
      autoscaling = {
        enabled                        = var.api_autoscaling.enabled
        minReplicas                    = var.api_autoscaling.min_replicas
        maxReplicas                    = var.api_autoscaling.max_replicas
        targetCPUUtilizationPercentage = var.api_autoscaling.target_cpu_utilization_percent
      }
    }
    streamer = {
      replicaCount = var.streamer_replicas
      autoscaling = {
        enabled                        = var.streamer_autoscaling.enabled
        minReplicas                    = var.streamer_autoscaling.min_replicas
        maxReplicas                    = var.streamer_autoscaling.max_replicas
        targetCPUUtilizationPercentage = var.streamer_autoscaling.target_cpu_utilization_percent
      }
    }
    worker = {
      replicaCount = var.worker_replicas
    }

    ingress = {
      enabled     = length(local.ingress_hosts) > 0
      className   = var.ingress_class_name == null ? "" : var.ingress_class_name
      certManager = { clusterIssuer = var.cert_manager_cluster_issuer == null ? "" : var.cert_manager_cluster_issuer }
      hosts       = local.ingress_hosts
    }

    serviceMonitor = {
      enabled = var.service_monitor.enabled
      labels  = var.service_monitor.labels
    }

    networkPolicy = {
      enabled = var.network_policy_enabled
      ingress = {
        controller = {
          namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = var.ingress_controller_namespace } }
        }
        monitoring = {
          namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = var.monitoring_namespace } }
        }
      }
    }
  }
}

resource "kubernetes_namespace_v1" "aiaas" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = merge(var.namespace_labels, {
      "app.kubernetes.io/part-of" = "aiaas"
    })
  }
}

resource "kubernetes_secret_v1" "aiaas_env" {
  count = var.create_secret ? 1 : 0

  metadata {
    name      = var.secret_name
    namespace = local.namespace
    labels = {
      "app.kubernetes.io/part-of"    = "aiaas"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  type = "Opaque"
  # The provider base64-encodes the values.
  data = local.secret_env

  lifecycle {
    precondition {
      condition     = var.database_url != null && var.redis_url != null && var.amqp_url != null
      error_message = "create_secret is true: set database_url, redis_url and amqp_url (in a *.tfvars file kept out of Git or as TF_VAR_* environment variables)."
    }
    precondition {
      condition     = var.database_url == null || startswith(coalesce(var.database_url, "-"), "postgresql+asyncpg://")
      error_message = "database_url must start with postgresql+asyncpg://."
    }
    precondition {
      condition     = var.redis_url == null || can(regex("^(redis|rediss|unix)://", coalesce(var.redis_url, "-")))
      error_message = "redis_url must start with redis://, rediss:// or unix://."
    }
    precondition {
      condition     = var.amqp_url == null || can(regex("^amqps?://", coalesce(var.amqp_url, "-")))
      error_message = "amqp_url must start with amqp:// or amqps://."
    }
  }
}

resource "helm_release" "aiaas" {
  name      = var.release_name
  namespace = local.namespace
  chart     = local.chart_path

  values = concat([yamlencode(local.chart_values)], var.extra_values)

  # Helm waits for the pre-install/pre-upgrade migration Job, then for the
  # Deployments to be ready.
  wait            = true
  timeout         = var.helm_timeout_seconds
  atomic          = var.atomic
  cleanup_on_fail = true
  max_history     = 10

  lifecycle {
    precondition {
      condition     = var.create_secret || (var.existing_secret_name != null && var.existing_secret_name != "")
      error_message = "create_secret is false: set existing_secret_name to the Secret holding the AIAAS_* secret variables."
    }
    precondition {
      condition     = var.streamer_ingress_host == null || var.ingress_host != null
      error_message = "streamer_ingress_host needs ingress_host."
    }
  }
}
