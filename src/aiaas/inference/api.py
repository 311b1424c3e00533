"""Public interface of the ``inference`` context: the only functions other contexts may call.

Functions here return frozen Structs, never ORM rows.
"""

from __future__ import annotations

__all__: list[str] = []
