"""Tenancy: organizations, memberships and roles, and the audit log of management writes.

Other contexts may import only this package's ``api`` and ``events`` modules.
"""
