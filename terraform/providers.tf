# Both providers talk to the cluster through a kubeconfig by default. Any
# cluster works (managed or self-hosted): point kubeconfig_path/kube_context at
# it. A calling configuration that creates the cluster in the same apply (see
# examples/aws) sets kube_host, kube_cluster_ca_certificate and kube_exec
# instead, since no kubeconfig exists before the cluster does.

provider "kubernetes" {
  config_path            = var.kube_host == null ? var.kubeconfig_path : null
  config_context         = var.kube_host == null ? var.kube_context : null
  host                   = var.kube_host
  cluster_ca_certificate = var.kube_cluster_ca_certificate

  dynamic "exec" {
    for_each = var.kube_exec == null ? [] : [var.kube_exec]

    content {
      api_version = exec.value.api_version
      command     = exec.value.command
      args        = exec.value.args
      env         = exec.value.env
    }
  }
}

provider "helm" {
  kubernetes = {
    config_path            = var.kube_host == null ? var.kubeconfig_path : null
    config_context         = var.kube_host == null ? var.kube_context : null
    host                   = var.kube_host
    cluster_ca_certificate = var.kube_cluster_ca_certificate
    exec                   = var.kube_exec
  }

  # Diff the rendered manifests in `terraform plan`, so that a change to the
  # local chart's templates shows up even when the chart version does not
  # change. The manifests hold no secret values (the chart only references the
  # Secret by name). Off when the cluster does not exist yet at plan time.
  experiments = {
    manifest = var.helm_manifest_diff
  }
}
