"""The composition root: the only code that sees every bounded context."""
