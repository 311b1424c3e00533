variable "region" {
  description = "AWS region of the state bucket, the lock table and the image repository (use the region of the install)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Prefix of the lock table, the KMS alias and the image repository."
  type        = string
  default     = "aiaas"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name))
    error_message = "name must be 3-16 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "state_bucket_name" {
  description = "Name of the new S3 bucket for Terraform state; bucket names are global, so include something of yours, e.g. <company>-aiaas-terraform-state."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket_name)) && !strcontains(var.state_bucket_name, "..")
    error_message = "state_bucket_name must be a valid S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
