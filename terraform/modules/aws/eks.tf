############################################################################
# EKS control plane
############################################################################

data "aws_iam_policy_document" "cluster_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["eks.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name_prefix        = "${local.prefix}-cluster-"
  assume_role_policy = data.aws_iam_policy_document.cluster_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# Envelope encryption of Kubernetes Secrets with the eks key.
data "aws_iam_policy_document" "cluster_kms" {
  statement {
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
    resources = [aws_kms_key.this["eks"].arn]
  }
}

resource "aws_iam_role_policy" "cluster_kms" {
  name   = "encrypt-kubernetes-secrets"
  role   = aws_iam_role.cluster.id
  policy = data.aws_iam_policy_document.cluster_kms.json
}

# Created before the cluster so that EKS writes into an encrypted group with a
# retention instead of making its own.
resource "aws_cloudwatch_log_group" "cluster" {
  name              = "/aws/eks/${local.cluster_name}/cluster"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = aws_kms_key.this["logs"].arn
  tags              = local.tags
}

resource "aws_eks_cluster" "this" {
  # checkov:skip=CKV_AWS_38: checkov falls back to the variable's default ([]) and cannot see the caller's list; the variable's validation refuses 0.0.0.0/0 and the precondition below refuses an empty list while the endpoint is public.
  # checkov:skip=CKV_AWS_39: The public endpoint is what lets one `terraform apply` from an operator's machine install the chart; it is limited to cluster_endpoint_public_access_cidrs (never 0.0.0.0/0, see the precondition) and can be switched off with cluster_endpoint_public_access = false.
  name     = local.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = true
  }

  vpc_config {
    subnet_ids              = aws_subnet.private[*].id
    endpoint_private_access = true
    endpoint_public_access  = var.cluster_endpoint_public_access
    public_access_cidrs     = var.cluster_endpoint_public_access_cidrs # used only while the public endpoint is on
  }

  encryption_config {
    resources = ["secrets"]

    provider {
      key_arn = aws_kms_key.this["eks"].arn
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      # An empty list would make EKS default to 0.0.0.0/0.
      condition     = !var.cluster_endpoint_public_access || length(var.cluster_endpoint_public_access_cidrs) > 0
      error_message = "cluster_endpoint_public_access is true: set cluster_endpoint_public_access_cidrs to the CIDRs that may reach the API (e.g. your address /32), or set cluster_endpoint_public_access = false."
    }
  }

  depends_on = [
    aws_iam_role_policy_attachment.cluster,
    aws_iam_role_policy.cluster_kms,
    aws_cloudwatch_log_group.cluster,
  ]
}

resource "aws_eks_access_entry" "admin" {
  for_each = toset(var.cluster_admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  type          = "STANDARD"
  tags          = local.tags
}

resource "aws_eks_access_policy_association" "admin" {
  for_each = toset(var.cluster_admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = aws_eks_access_entry.admin[each.value].principal_arn
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }
}

############################################################################
# IAM roles for service accounts (IRSA)
############################################################################

locals {
  oidc_issuer = trimprefix(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://")
}

resource "aws_iam_openid_connect_provider" "eks" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.${local.dns_suffix}"]
  tags           = local.tags
}

# The External Secrets Operator's controller may read aiaas's Secrets Manager
# entry, and nothing else.
data "aws_iam_policy_document" "external_secrets_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.external_secrets_namespace}:${var.external_secrets_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "external_secrets" {
  name_prefix        = "${local.prefix}-eso-"
  assume_role_policy = data.aws_iam_policy_document.external_secrets_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "external_secrets" {
  statement {
    sid       = "ReadOnlyTheAiaasEntry"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds"]
    resources = [aws_secretsmanager_secret.app.arn]
  }

  statement {
    sid       = "DecryptItThroughSecretsManagerOnly"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this["secrets"].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role_policy" "external_secrets" {
  name   = "read-aiaas-secret"
  role   = aws_iam_role.external_secrets.id
  policy = data.aws_iam_policy_document.external_secrets.json
}

############################################################################
# Managed node group in the private subnets
############################################################################

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${local.prefix}-node-"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset(["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

# The nodes' own security group: the one source the data stores accept. Pods
# on the VPC CNI use their node's security groups, so aiaas's pods carry it.
resource "aws_security_group" "node" {
  name_prefix = "${local.prefix}-node-"
  description = "EKS nodes of ${local.cluster_name}; the data stores accept connections only from this group"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.prefix}-node" })

  lifecycle {
    create_before_destroy = true
  }
}

# Egress is open: nodes pull images, call AWS APIs and the streamer calls
# upstream model providers (the chart's NetworkPolicies narrow it per pod).
resource "aws_vpc_security_group_egress_rule" "node_all" {
  security_group_id = aws_security_group.node.id
  description       = "Nodes and pods reach AWS APIs, registries and upstream model providers"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_launch_template" "node" {
  name_prefix            = "${local.prefix}-node-"
  update_default_version = true

  # With its own security groups in the launch template EKS no longer adds
  # the cluster security group, so both are listed.
  vpc_security_group_ids = [
    aws_eks_cluster.this.vpc_config[0].cluster_security_group_id,
    aws_security_group.node.id,
  ]

  # IMDSv2 only, one hop: pods cannot reach the node role's credentials; they
  # get AWS access through IRSA.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.node_disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${local.prefix}-node" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${local.prefix}-node" })
  }

  tags = local.tags
}

resource "aws_eks_node_group" "default" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "default"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id
  version         = var.kubernetes_version

  ami_type       = "AL2023_x86_64_STANDARD"
  capacity_type  = var.node_capacity_type
  instance_types = var.node_instance_types

  scaling_config {
    min_size     = var.node_group_size.min
    desired_size = var.node_group_size.desired
    max_size     = var.node_group_size.max
  }

  update_config {
    max_unavailable = 1
  }

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  tags = local.tags

  lifecycle {
    # A cluster autoscaler owns the running size after the first apply.
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# Managed add-ons. The VPC CNI enforces NetworkPolicy, which the chart relies
# on (its default-deny policies are ignored by a CNI that does not).
resource "aws_eks_addon" "this" {
  for_each = {
    "vpc-cni"    = jsonencode({ enableNetworkPolicy = "true" })
    "kube-proxy" = null
    "coredns"    = null
  }

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.key
  configuration_values        = each.value
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"
  tags                        = local.tags

  # CoreDNS needs nodes to become healthy.
  depends_on = [aws_eks_node_group.default]
}
