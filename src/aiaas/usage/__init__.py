"""Metering: the usage ledger, rate limits and quotas.

Other contexts may import only this package's ``api`` and ``events`` modules.
"""
