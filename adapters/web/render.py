"""Server-rendered pages: small ``string.Template`` files filled with escaped values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from html import escape
from importlib import resources
from string import Template

from aiohttp import web

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file held in memory."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class Bundle:
    """Templates and static files, read once at start-up."""

    templates: dict[str, Template]
    assets: dict[str, Asset]

    @property
    def version(self) -> str:
        """A short hash of the static files, for cache busting."""
        joined = "".join(sorted(a.etag for a in self.assets.values()))
        return hashlib.sha256(joined.encode()).hexdigest()[:10]


def load_bundle() -> Bundle:
    """Read templates and static files from the package (blocking: run it in a thread)."""
    root = resources.files("adapters.web")
    templates = {e.name.removesuffix(".html"): Template(e.read_text("utf-8"))
                 for e in root.joinpath("templates").iterdir() if e.name.endswith(".html")}
    assets: dict[str, Asset] = {}
    for entry in root.joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if suffix in STATIC_TYPES:
            body = entry.read_bytes()
            assets[entry.name] = Asset(body, STATIC_TYPES[suffix],
                                       hashlib.sha256(body).hexdigest()[:16])
    return Bundle(templates, assets)


def fill(bundle: Bundle, name: str, **values: object) -> str:
    """Fill a template; values are inserted as given (escape text before passing it)."""
    return bundle.templates[name].substitute({k: str(v) for k, v in values.items()})


def json_island(element_id: str, data: object) -> str:
    """Data for the page's script, in a non-executable JSON block (safe inside HTML)."""
    text = (json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def page(bundle: Bundle, *, lang: str, title: str, body: str, script: str | None = None,
         body_class: str = "", status: int = 200) -> web.Response:
    """A full HTML page in the base layout."""
    version = bundle.version
    scripts = f'<script src="/static/{script}?v={version}" defer></script>' if script else ""
    text = fill(bundle, "base", lang=escape(lang), title=escape(title), body=body,
                scripts=scripts, body_class=escape(body_class), v=version)
    return web.Response(text=text, content_type="text/html", charset="utf-8", status=status)
