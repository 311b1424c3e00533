terraform {
  required_version = ">= 1.5.0"

  # This root makes the remote state's bucket, so its own state is local:
  # keep terraform.tfstate (it holds no secret) or move it into the bucket
  # afterwards (add a backend "s3" block, terraform init -migrate-state).

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0.0, < 7.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project   = "aiaas"
      ManagedBy = "terraform"
    })
  }
}
