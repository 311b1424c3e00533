# Both providers talk to the cluster through a kubeconfig. Any cluster works
# (managed or self-hosted): point kubeconfig_path/kube_context at it. To use
# this directory as a child module instead, delete this file and pass the
# providers from the calling configuration.

provider "kubernetes" {
  config_path    = var.kubeconfig_path
  config_context = var.kube_context
}

provider "helm" {
  kubernetes = {
    config_path    = var.kubeconfig_path
    config_context = var.kube_context
  }

  # Diff the rendered manifests in `terraform plan`, so that a change to the
  # local chart's templates shows up even when the chart version does not
  # change. The manifests hold no secret values (the chart only references the
  # Secret by name).
  experiments = {
    manifest = true
  }
}
