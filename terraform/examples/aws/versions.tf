terraform {
  required_version = ">= 1.5.0"

  # Remote state: S3, encrypted with a KMS key, locked in DynamoDB. The state
  # holds the generated passwords, so it must never be local or unencrypted.
  # The account-specific settings (bucket, region, lock table, KMS key) come
  # from a backend.hcl made from backend.hcl.example:
  #   terraform init -backend-config=backend.hcl
  # The ../aws-bootstrap root creates the bucket, the table and the key.
  backend "s3" {
    key     = "aiaas/production/terraform.tfstate"
    encrypt = true
  }

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0.0, < 7.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
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
