"""Server-rendered pages: Jinja2 templates (aiohttp-jinja2) with autoescaping on for every one.

Values reach templates as plain text and are escaped by Jinja2; fragments (result cards, the
operator's tables) are macros of the same environment, passed on to pages as ``Markup``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file held in memory."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class Bundle:
    """Template sources and static files, read once at start-up."""

    templates: dict[str, str]
    assets: dict[str, Asset]
    env: jinja2.Environment

    @property
    def version(self) -> str:
        """A short hash of the static files, for cache busting."""
        joined = "".join(sorted(a.etag for a in self.assets.values()))
        return hashlib.sha256(joined.encode()).hexdigest()[:10]


def load_bundle() -> Bundle:
    """Read templates and static files from the package (blocking: run it in a thread)."""
    root = resources.files("adapters.web")
    templates = {e.name: e.read_text("utf-8")
                 for e in root.joinpath("templates").iterdir() if e.name.endswith(".html")}
    assets: dict[str, Asset] = {}
    for entry in root.joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if suffix in STATIC_TYPES:
            body = entry.read_bytes()
            assets[entry.name] = Asset(body, STATIC_TYPES[suffix],
                                       hashlib.sha256(body).hexdigest()[:16])
    # autoescape=True for every template, not chosen by file name: nothing renders unescaped;
    # StrictUndefined makes a misspelt value an error instead of an empty string.
    env = jinja2.Environment(loader=jinja2.DictLoader(templates), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    bundle = Bundle(templates, assets, env)
    env.globals["v"] = bundle.version
    return bundle


def setup(app: web.Application, bundle: Bundle) -> jinja2.Environment:
    """Render ``app``'s pages with the bundle's environment (aiohttp-jinja2's app key)."""
    app[aiohttp_jinja2.APP_KEY] = bundle.env
    return bundle.env


def html(fragment: str) -> Markup:
    """Mark HTML built by a fragment helper (which escaped what it inserted) as safe."""
    return Markup(fragment)


def json_island(element_id: str, data: object) -> Markup:
    """Data for the page's script, in a non-executable JSON block (safe inside HTML)."""
    text = (json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))
    return Markup('<script type="application/json" id="{}">{}</script>').format(
        element_id, Markup(text))  # <, > and & are escaped above


def page(request: web.Request, name: str, *, lang: str, title: str, script: str | None = None,
         body_class: str = "", status: int = 200, **values: Any) -> web.Response:
    """A full HTML page: ``name``.html extends base.html; every value is autoescaped."""
    context = {"lang": lang, "title": title, "script": script, "body_class": body_class, **values}
    response = aiohttp_jinja2.render_template(f"{name}.html", request, context, status=status)
    response.charset = "utf-8"
    return response
