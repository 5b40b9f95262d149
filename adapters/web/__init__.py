"""The web console: a browser playground and an operator view, served over the same core."""

from adapters.web.app import WebConsole

__all__ = ["WebConsole"]
