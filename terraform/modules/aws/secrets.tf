############################################################################
# Secrets Manager: one entry, <name>/<environment> (aiaas/production), whose
# JSON keys are the AIAAS_* variables the chart's Secret must hold. The
# External Secrets Operator copies it into the Kubernetes Secret aiaas-env
# (charts/argocd/<env>/externalsecret.yaml reads the same entry the same way).
############################################################################

resource "random_password" "bootstrap_admin" {
  length  = 32 # aiaas accepts 12 to 72 characters
  special = false
}

resource "random_password" "metrics_token" {
  length  = 48
  special = false
}

locals {
  database_url = format(
    "postgresql+asyncpg://%s:%s@%s:%d/%s?ssl=require", # pragma: allowlist secret (placeholders)
    local.postgres_username,
    random_password.postgres.result,
    aws_db_instance.postgres.address,
    aws_db_instance.postgres.port,
    local.postgres_database,
  )

  redis_url = format(
    "rediss://:%s@%s:%d/0",
    random_password.redis.result,
    aws_elasticache_replication_group.redis.primary_endpoint_address,
    local.redis_port,
  )

  # The broker's endpoint is amqps://<host>:5671; the credentials go in front
  # of the host and the default virtual host (/) after it.
  amqp_url = format(
    "amqps://%s:%s@%s/", # pragma: allowlist secret (placeholders)
    local.rabbitmq_username,
    random_password.rabbitmq.result,
    trimprefix(aws_mq_broker.rabbitmq.instances[0].endpoints[0], "amqps://"),
  )

  app_secret = {
    AIAAS_DATABASE_URL             = local.database_url
    AIAAS_REDIS_URL                = local.redis_url
    AIAAS_AMQP_URL                 = local.amqp_url
    AIAAS_BOOTSTRAP_ADMIN_PASSWORD = random_password.bootstrap_admin.result
    AIAAS_METRICS_TOKEN            = random_password.metrics_token.result
  }
}

resource "aws_secretsmanager_secret" "app" {
  # checkov:skip=CKV2_AWS_57: Rotation needs a function that changes the database, Redis and RabbitMQ credentials together with the URLs; rotate with terraform apply -replace=module.aws.random_password.<name>, which changes the store's credential and the entry in one plan (terraform/README.md).
  name                    = "${var.name}/${var.environment}"
  description             = "Secret AIAAS_* settings of aiaas ${var.environment}, read by the External Secrets Operator"
  kms_key_id              = aws_kms_key.this["secrets"].arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "app" {
  secret_id     = aws_secretsmanager_secret.app.id
  secret_string = jsonencode(local.app_secret)
}
