output "namespace" {
  description = "Namespace aiaas runs in."
  value       = local.namespace
}

output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.aiaas.name
}

output "secret_name" {
  description = "Secret holding the secret AIAAS_* variables (its values are never output)."
  value       = local.secret_name
}

output "api_service" {
  description = "In-cluster address of the api role (chart default port)."
  value       = "${local.fullname}-api.${local.namespace}.svc:8000"
}

output "streamer_service" {
  description = "In-cluster address of the streamer role (chart default port)."
  value       = "${local.fullname}-streamer.${local.namespace}.svc:8001"
}

output "bootstrap_command" {
  description = "Creates the first admin, organisation and API key (run once)."
  value       = "kubectl -n ${local.namespace} exec deploy/${local.fullname}-api -- aiaas bootstrap"
}
