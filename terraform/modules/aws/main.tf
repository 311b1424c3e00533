data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: Only the first availability_zone_count names are used (or the names pinned in availability_zones), so a zone AWS adds later never joins the set; no state filter either, so an impaired zone does not reshuffle the subnets.
  # Only the AZs every account has (no Local or Wavelength Zones).
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  prefix       = "${var.name}-${var.environment}"
  cluster_name = local.prefix
  azs          = length(var.availability_zones) > 0 ? var.availability_zones : slice(sort(data.aws_availability_zones.available.names), 0, var.availability_zone_count)

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  dns_suffix = data.aws_partition.current.dns_suffix

  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "aiaas"
    "aiaas/environment"         = var.environment
  })

  # One port per data store; its security group opens only this port, only to the nodes.
  postgres_port = 5432
  redis_port    = 6379
  rabbitmq_port = 5671 # AMQP over TLS; Amazon MQ for RabbitMQ has no plain-text listener
}

############################################################################
# KMS: one customer-managed key per purpose, rotated yearly.
############################################################################

locals {
  kms_keys = {
    eks     = "Kubernetes Secrets of the ${local.cluster_name} EKS cluster (envelope encryption)"
    data    = "RDS PostgreSQL storage, Performance Insights and ElastiCache Redis of ${local.prefix}"
    secrets = "Secrets Manager entries of ${local.prefix}"
    logs    = "CloudWatch Logs of ${local.prefix} (VPC flow logs, EKS control plane, RDS, ElastiCache)"
  }
}

data "aws_iam_policy_document" "kms" {
  for_each = local.kms_keys

  # checkov:skip=CKV_AWS_109: A key policy's "*" resource is the key itself; the account root statement is what lets IAM policies grant use of the key at all.
  # checkov:skip=CKV_AWS_111: Same: write actions in a key policy apply only to this key.
  # checkov:skip=CKV_AWS_356: In a key policy "*" can only mean this key.
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []

    content {
      sid       = "CloudWatchLogsUsesTheKey"
      actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["logs.${local.region}.${local.dns_suffix}"]
      }

      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each = local.kms_keys

  description             = each.value
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms[each.key].json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  for_each = local.kms_keys

  name          = "alias/${local.prefix}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}
