"""kopf handlers. Importing this package registers them."""

from . import route, settings

__all__ = ["route", "settings"]
