output "region" {
  description = "Region everything was created in."
  value       = local.region
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets (load balancers only)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets of the EKS nodes."
  value       = aws_subnet.private[*].id
}

output "data_subnet_ids" {
  description = "Private subnets of RDS, ElastiCache and Amazon MQ (no internet route)."
  value       = aws_subnet.data[*].id
}

output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API. Known only once the nodes and add-ons are up, so that whatever installs into the cluster waits for them."
  value       = aws_eks_cluster.this.endpoint

  depends_on = [aws_eks_node_group.default, aws_eks_addon.this, aws_eks_access_policy_association.admin]
}

output "cluster_certificate_authority_data" {
  description = "Base64-encoded CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, for more IRSA roles."
  value       = aws_iam_openid_connect_provider.eks.arn
}

output "node_security_group_id" {
  description = "Security group of the EKS nodes, the only source the data stores accept."
  value       = aws_security_group.node.id
}

output "external_secrets_role_arn" {
  description = "IRSA role of the External Secrets Operator (annotate its service account with eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.external_secrets.arn
}

output "external_secrets_namespace" {
  description = "Namespace the External Secrets Operator must run in for its IRSA role to apply."
  value       = var.external_secrets_namespace
}

output "external_secrets_service_account" {
  description = "Service account name the External Secrets Operator must use for its IRSA role to apply."
  value       = var.external_secrets_service_account
}

output "app_secret_name" {
  description = "Name of the Secrets Manager entry holding the secret AIAAS_* settings (the ExternalSecret's dataFrom.extract.key)."
  value       = aws_secretsmanager_secret.app.name
}

output "app_secret_arn" {
  description = "ARN of that entry."
  value       = aws_secretsmanager_secret.app.arn
}

output "app_secret_keys" {
  description = "The keys of that entry, i.e. the variables the Kubernetes Secret will hold (names only, never values)."
  value       = sort(keys(local.app_secret))
}

output "external_secret_manifest" {
  description = "An ExternalSecret (with its SecretStore) that materialises the entry as the Secret aiaas-env, for clusters where Terraform does not install it (GitOps)."
  value = join("---\n", [
    yamlencode({
      apiVersion = "external-secrets.io/v1"
      kind       = "SecretStore"
      metadata   = { name = "aws-secrets-manager", namespace = "aiaas" }
      spec       = { provider = { aws = { service = "SecretsManager", region = local.region } } }
    }),
    yamlencode({
      apiVersion = "external-secrets.io/v1"
      kind       = "ExternalSecret"
      metadata   = { name = "aiaas-env", namespace = "aiaas" }
      spec = {
        refreshInterval = "1h"
        secretStoreRef  = { kind = "SecretStore", name = "aws-secrets-manager" }
        target          = { name = "aiaas-env", creationPolicy = "Owner" }
        dataFrom        = [{ extract = { key = aws_secretsmanager_secret.app.name } }]
      }
    }),
  ])
}

output "postgres_address" {
  description = "Host name of the RDS instance (private)."
  value       = aws_db_instance.postgres.address
}

output "redis_primary_endpoint" {
  description = "Host name of the ElastiCache primary (private, TLS)."
  value       = aws_elasticache_replication_group.redis.primary_endpoint_address
}

output "rabbitmq_endpoint" {
  description = "AMQPS endpoint of the broker (private)."
  value       = aws_mq_broker.rabbitmq.instances[0].endpoints[0]
}
