provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project     = "aiaas"
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}

# The cluster is created by this same apply, so there is no kubeconfig to
# read: the providers take the endpoint and CA from module.aws and fetch a
# short-lived token with the AWS CLI on every call (a token read once at plan
# time would expire while EKS, RDS and Amazon MQ are being created).
locals {
  kube_exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.aws.cluster_name, "--region", var.region, "--output", "json"]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.aws.cluster_endpoint
    cluster_ca_certificate = base64decode(module.aws.cluster_certificate_authority_data)
    exec                   = local.kube_exec
  }
}
