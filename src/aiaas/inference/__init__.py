"""OpenAI-compatible inference: the model catalog, providers, routing and the completion events.

Other contexts may import only this package's ``api`` and ``events`` modules.
"""
