############################################################################
# Security groups: each data store accepts its one port, from the nodes'
# security group only. No egress rules: replies to accepted connections are
# allowed by the security group being stateful, and the stores start no
# connection of their own.
############################################################################

resource "aws_security_group" "postgres" {
  name_prefix = "${local.prefix}-postgres-"
  description = "RDS PostgreSQL of ${local.prefix}: ${local.postgres_port}/tcp from the EKS nodes only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.prefix}-postgres" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_nodes" {
  security_group_id            = aws_security_group.postgres.id
  description                  = "PostgreSQL from the EKS nodes"
  ip_protocol                  = "tcp"
  from_port                    = local.postgres_port
  to_port                      = local.postgres_port
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_security_group" "redis" {
  name_prefix = "${local.prefix}-redis-"
  description = "ElastiCache Redis of ${local.prefix}: ${local.redis_port}/tcp from the EKS nodes only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.prefix}-redis" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_nodes" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis (TLS) from the EKS nodes"
  ip_protocol                  = "tcp"
  from_port                    = local.redis_port
  to_port                      = local.redis_port
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_security_group" "rabbitmq" {
  name_prefix = "${local.prefix}-rabbitmq-"
  description = "Amazon MQ for RabbitMQ of ${local.prefix}: ${local.rabbitmq_port}/tcp from the EKS nodes only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.prefix}-rabbitmq" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "rabbitmq_from_nodes" {
  security_group_id            = aws_security_group.rabbitmq.id
  description                  = "AMQPS from the EKS nodes"
  ip_protocol                  = "tcp"
  from_port                    = local.rabbitmq_port
  to_port                      = local.rabbitmq_port
  referenced_security_group_id = aws_security_group.node.id
}

############################################################################
# PostgreSQL: RDS, private, encrypted with the data key, TLS required.
############################################################################

locals {
  postgres_major       = split(".", var.postgres_engine_version)[0]
  postgres_database    = "aiaas"
  postgres_username    = "aiaas"
  postgres_log_exports = ["postgresql", "upgrade"]
}

resource "random_password" "postgres" {
  length  = 40
  special = false # it goes into a URL; 40 alphanumerics are ~238 bits
}

resource "aws_db_subnet_group" "postgres" {
  name_prefix = "${local.prefix}-postgres-"
  description = "Data subnets of ${local.prefix}"
  subnet_ids  = aws_subnet.data[*].id
  tags        = local.tags
}

resource "aws_db_parameter_group" "postgres" {
  name_prefix = "${local.prefix}-postgres${local.postgres_major}-"
  family      = "postgres${local.postgres_major}"
  description = "aiaas: TLS required, connections logged"

  # Refuse every connection that is not TLS.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

# Created before the instance so that its exported logs land encrypted and
# with a retention.
resource "aws_cloudwatch_log_group" "postgres" {
  for_each = toset(local.postgres_log_exports)

  name              = "/aws/rds/instance/${local.prefix}-postgres/${each.value}"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = aws_kms_key.this["logs"].arn
  tags              = local.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name_prefix        = "${local.prefix}-rds-monitoring-"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "postgres" {
  identifier     = "${local.prefix}-postgres"
  engine         = "postgres"
  engine_version = var.postgres_engine_version
  instance_class = var.postgres_instance_class

  allocated_storage     = var.postgres_allocated_storage_gib
  max_allocated_storage = var.postgres_max_allocated_storage_gib
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this["data"].arn

  db_name  = local.postgres_database
  username = local.postgres_username
  password = random_password.postgres.result
  port     = local.postgres_port

  db_subnet_group_name   = aws_db_subnet_group.postgres.name
  vpc_security_group_ids = [aws_security_group.postgres.id]
  publicly_accessible    = false
  multi_az               = var.postgres_multi_az

  parameter_group_name = aws_db_parameter_group.postgres.name
  ca_cert_identifier   = "rds-ca-rsa2048-g1"

  # IAM authentication is on for people (psql with a token); aiaas itself uses the password.
  iam_database_authentication_enabled = true

  backup_retention_period   = var.postgres_backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.postgres_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.prefix}-postgres-final"

  auto_minor_version_upgrade = true
  apply_immediately          = false

  enabled_cloudwatch_logs_exports       = local.postgres_log_exports
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.this["data"].arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn

  tags = local.tags

  depends_on = [aws_cloudwatch_log_group.postgres, aws_iam_role_policy_attachment.rds_monitoring]
}

############################################################################
# Redis: ElastiCache replication group, TLS and AUTH required, encrypted.
############################################################################

resource "random_password" "redis" {
  length  = 64
  special = false # AUTH tokens refuse some symbols and it goes into a URL
}

resource "aws_elasticache_subnet_group" "redis" {
  name        = "${local.prefix}-redis"
  description = "Data subnets of ${local.prefix}"
  subnet_ids  = aws_subnet.data[*].id
  tags        = local.tags
}

resource "aws_cloudwatch_log_group" "redis" {
  name              = "/aws/elasticache/${local.prefix}-redis/slow-log"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = aws_kms_key.this["logs"].arn
  tags              = local.tags
}

resource "aws_elasticache_replication_group" "redis" {
  # checkov:skip=CKV2_AWS_50: Automatic failover is on whenever there is a replica to fail over to (redis_num_cache_clusters >= 2, the default); checkov cannot evaluate the expression.
  replication_group_id = "${local.prefix}-redis"
  description          = "aiaas ${var.environment}: caches, rate limits and quotas"

  engine               = "redis"
  engine_version       = var.redis_engine_version
  parameter_group_name = "default.redis7"
  node_type            = var.redis_node_type
  port                 = local.redis_port

  num_cache_clusters         = var.redis_num_cache_clusters
  automatic_failover_enabled = var.redis_num_cache_clusters > 1
  multi_az_enabled           = var.redis_num_cache_clusters > 1

  subnet_group_name  = aws_elasticache_subnet_group.redis.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this["data"].arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.redis.result
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = 7
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = local.tags
}

############################################################################
# RabbitMQ: Amazon MQ, private, TLS only.
############################################################################

locals {
  rabbitmq_username = "aiaas"
}

resource "random_password" "rabbitmq" {
  length  = 40
  special = false # Amazon MQ refuses , : = and it goes into a URL
}

# Amazon MQ writes its general log to /aws/amazonmq/broker/<id>/general only
# when the account lets it.
data "aws_iam_policy_document" "rabbitmq_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/amazonmq/*"]

    principals {
      type        = "Service"
      identifiers = ["mq.${local.dns_suffix}"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "rabbitmq" {
  policy_name     = "${local.prefix}-amazonmq-logs"
  policy_document = data.aws_iam_policy_document.rabbitmq_logs.json
}

resource "aws_mq_broker" "rabbitmq" {
  # checkov:skip=CKV_AWS_209: Amazon MQ for RabbitMQ encrypts at rest only with an AWS-owned key; a customer-managed KMS key is supported for ActiveMQ brokers only.
  broker_name        = "${local.prefix}-rabbitmq"
  engine_type        = "RabbitMQ"
  engine_version     = var.rabbitmq_engine_version
  host_instance_type = var.rabbitmq_instance_type
  deployment_mode    = var.rabbitmq_deployment_mode

  publicly_accessible = false
  subnet_ids          = var.rabbitmq_deployment_mode == "SINGLE_INSTANCE" ? [aws_subnet.data[0].id] : aws_subnet.data[*].id
  security_groups     = [aws_security_group.rabbitmq.id]

  authentication_strategy    = "simple"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  encryption_options {
    use_aws_owned_key = true
  }

  logs {
    general = true
  }

  maintenance_window_start_time {
    day_of_week = "SUNDAY"
    time_of_day = "05:00"
    time_zone   = "UTC"
  }

  user {
    username = local.rabbitmq_username
    password = random_password.rabbitmq.result
  }

  tags = local.tags

  depends_on = [aws_cloudwatch_log_resource_policy.rabbitmq]
}
