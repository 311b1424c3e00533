"""Translators between the public wire formats the gateway serves and the chat completions its backends speak."""
