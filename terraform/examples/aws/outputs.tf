output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.aws.cluster_name
}

output "kubeconfig_command" {
  description = "Adds the cluster to your kubeconfig (needs the AWS CLI)."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.aws.cluster_name}"
}

output "namespace" {
  description = "Namespace aiaas runs in."
  value       = module.release.namespace
}

output "api_service" {
  description = "In-cluster address of the api role."
  value       = module.release.api_service
}

output "streamer_service" {
  description = "In-cluster address of the streamer role."
  value       = module.release.streamer_service
}

output "bootstrap_command" {
  description = "Creates the first admin, organisation and API key (run once, after the first apply)."
  value       = module.release.bootstrap_command
}

output "app_secret_name" {
  description = "Secrets Manager entry with the secret AIAAS_* settings (read it with aws secretsmanager get-secret-value)."
  value       = module.aws.app_secret_name
}

output "app_secret_keys" {
  description = "Keys of that entry, i.e. of the Kubernetes Secret (names only)."
  value       = module.aws.app_secret_keys
}

output "external_secrets_role_arn" {
  description = "IRSA role the External Secrets Operator reads the entry with."
  value       = module.aws.external_secrets_role_arn
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = module.aws.vpc_id
}
