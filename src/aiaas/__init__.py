"""aiaas: a self-hostable, OpenAI-compatible, multi-tenant AI gateway."""

__version__ = "0.1.0"
