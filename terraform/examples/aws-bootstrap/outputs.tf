output "backend_config" {
  description = "The contents of ../aws/backend.hcl."
  value       = <<-EOT
    bucket         = "${aws_s3_bucket.state.bucket}"
    region         = "${var.region}"
    dynamodb_table = "${aws_dynamodb_table.locks.name}"
    kms_key_id     = "${aws_kms_alias.state.name}"
    encrypt        = true
  EOT
}

output "repository_url" {
  description = "ECR repository to push the aiaas image to (image_repository of ../aws)."
  value       = aws_ecr_repository.aiaas.repository_url
}

output "registry" {
  description = "Registry host, for docker login."
  value       = split("/", aws_ecr_repository.aiaas.repository_url)[0]
}
