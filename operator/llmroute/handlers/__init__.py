"""kopf handlers. Importing this package registers them."""

from . import quota, route, settings

__all__ = ["quota", "route", "settings"]
