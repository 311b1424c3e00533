terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # helm_release and the provider block use the 3.x syntax (nested objects,
    # not blocks).
    helm = {
      source  = "hashicorp/helm"
      version = ">= 3.0.0, < 4.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.31.0, < 4.0.0"
    }
  }
}
