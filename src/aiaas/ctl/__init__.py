"""``aiaasctl``: the command-line client of aiaas.

A client only: it speaks the public HTTP API that ``contracts/openapi.yaml`` describes (the management API
and the OpenAI-compatible inference API) and imports no server code, so it can be installed and run far
from the platform. ``importlinter.ini`` keeps it that way.

Modules: ``client`` (the one HTTP function), ``config`` (the config and credentials files), ``output``
(tables, JSON, CSV), ``durations`` (``30d``, ISO instants), ``errors`` (exit codes), ``state`` (global
options and what they resolve to), ``resolve`` (orgs, members and keys named by id or name) and one module
per command group under ``commands``.
"""
