############################################################################
# One apply, from an account with only the ../aws-bootstrap resources in it,
# to a running aiaas:
#   1. module.aws: VPC, EKS with its node group, RDS PostgreSQL, ElastiCache
#      Redis, Amazon MQ for RabbitMQ, KMS keys and the Secrets Manager entry
#      <name>/<environment> holding the AIAAS_* secrets;
#   2. the External Secrets Operator, whose IRSA role may read only that entry;
#   3. a SecretStore and an ExternalSecret that turn the entry into the
#      Kubernetes Secret aiaas-env;
#   4. module.release (the directory two levels up): the namespace and the
#      chart, pointed at that Secret. Helm runs the migration Job and waits
#      for every role to be ready.
############################################################################

module "aws" {
  source = "../../modules/aws"

  name        = var.name
  environment = var.environment
  tags        = var.tags

  availability_zone_count              = var.availability_zone_count
  cluster_endpoint_public_access       = true
  cluster_endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs
  cluster_admin_principal_arns         = var.cluster_admin_principal_arns
  node_instance_types                  = var.node_instance_types

  postgres_multi_az            = var.postgres_multi_az
  postgres_deletion_protection = var.postgres_deletion_protection
  redis_num_cache_clusters     = var.redis_num_cache_clusters
  rabbitmq_deployment_mode     = var.rabbitmq_deployment_mode
}

resource "helm_release" "external_secrets" {
  name             = "external-secrets"
  namespace        = module.aws.external_secrets_namespace
  create_namespace = true
  repository       = "https://charts.external-secrets.io"
  chart            = "external-secrets"
  version          = var.external_secrets_chart_version

  values = [yamlencode({
    installCRDs = true
    serviceAccount = {
      create      = true
      name        = module.aws.external_secrets_service_account
      annotations = { "eks.amazonaws.com/role-arn" = module.aws.external_secrets_role_arn }
    }
  })]

  # The webhook must answer before a SecretStore can be created.
  wait    = true
  timeout = 600
  atomic  = true
}

# A SecretStore in aiaas's namespace (no other namespace can use it) and the
# ExternalSecret that copies the whole entry into the Secret. A local chart
# rather than kubernetes_manifest: the latter needs the CRDs at plan time,
# before the cluster exists.
resource "helm_release" "app_secret" {
  name      = "aiaas-secrets"
  namespace = module.release.namespace
  chart     = "${path.module}/charts/aiaas-secrets"

  values = [yamlencode({
    region     = module.aws.region
    entry      = module.aws.app_secret_name
    secretName = var.secret_name
  })]

  depends_on = [helm_release.external_secrets]
}

# The Secret's name, known only once its ExternalSecret exists: handing it to
# module.release makes the chart (and its migration hook) wait for it. The
# hook's pod starts as soon as the operator has written the Secret.
resource "terraform_data" "app_secret_name" {
  input = var.secret_name

  depends_on = [helm_release.app_secret]
}

module "release" {
  source = "../.."

  # The cluster created above; see providers.tf for why no kubeconfig.
  kube_host                   = module.aws.cluster_endpoint
  kube_cluster_ca_certificate = base64decode(module.aws.cluster_certificate_authority_data)
  kube_exec                   = local.kube_exec
  helm_manifest_diff          = false

  namespace    = var.namespace
  release_name = var.release_name

  image_repository = var.image_repository
  image_tag        = var.image_tag

  create_secret        = false
  existing_secret_name = terraform_data.app_secret_name.output

  config_env = merge({ AIAAS_LOG_LEVEL = "INFO" }, var.config_env)

  api_replicas      = var.api_replicas
  streamer_replicas = var.streamer_replicas
  worker_replicas   = var.worker_replicas

  ingress_host       = var.ingress_host
  ingress_class_name = var.ingress_class_name
}
