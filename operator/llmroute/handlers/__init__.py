"""kopf handlers. Importing this package registers them."""

from . import metrics, quota, route, settings

__all__ = ["metrics", "quota", "route", "settings"]
