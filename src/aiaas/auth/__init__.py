"""Identity: users, passwords, sessions, API keys and the resolution of a bearer token to a principal.

Other contexts may import only this package's ``api`` and ``events`` modules.
"""
