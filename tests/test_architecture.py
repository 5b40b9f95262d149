"""The shape of the tree (docs/architecture.md), read from the source with ``ast``: no import
cycles, a core that never imports a platform or an adapter, small modules, one port."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
#: The command line is the process's composition root and the operator's terminal: besides the
#: port it loads the config, builds and warms the core, runs ``generate`` (no chat platform) and
#: words what only an operator sees (routes, retired models, each error category, masked secrets).
CLI_ALSO = frozenset({"bot.bootstrap", "bot.config", "bot.warmup", "bot.generate", "bot.outfiles",
                      "bot.errors", "bot.redact", "bot.catalog", "bot.providers.routes",
                      "bot.providers.wire.aio_transport"})


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, and whether it runs when the importer is imported."""

    target: str
    line: int
    top_level: bool


def module_name(path: Path) -> str:
    """``bot/storage/base.py`` -> ``bot.storage.base``; a package's ``__init__`` is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*packages: str) -> dict[str, Path]:
    """Every module under ``packages``, by dotted name."""
    return {module_name(p): p for package in packages
            for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = sources("bot", "adapters")


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(body: list[ast.stmt], top: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement with whether it runs at import time (not in a function, not type-only)."""
    for node in body:
        yield node, top
        if isinstance(node, ast.If):
            yield from _statements(node.body, top and not _type_checking(node.test))
            yield from _statements(node.orelse, top)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                yield from _statements(block, top)
        elif isinstance(node, ast.With | ast.AsyncWith | ast.For | ast.AsyncFor | ast.While
                        | ast.ClassDef):
            yield from _statements(node.body, top)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, False)


def imports(name: str, path: Path) -> list[Import]:
    """What ``name`` imports, each resolved to the most specific module it names."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node, top in _statements(tree.body, True):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importer's package upwards
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in MODULES else base, node.lineno, top))
    return found


def _known(target: str) -> str | None:
    """The module of ours ``target`` names (``bot.api.Actor`` -> ``bot.api``), if any."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports at import time."""
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        # Exact modules only: importing ``a.b.c`` runs package ``a.b`` first, but a package that
        # imports its own modules would then always look like a cycle.
        edges[name] = {i.target for i in imports(name, path)
                       if i.top_level and i.target in MODULES and i.target != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


PACKAGES = ["bot", *sorted(m for m in MODULES if m.count(".") == 1 and m.startswith("adapters.")
                           and (ROOT / m.replace(".", "/")).is_dir())]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    """Modules import each other one way only (lazy imports in functions do not count)."""
    mine = [c for c in cycles(graph()) if any(m == package or m.startswith(package + ".")
                                              for m in c)]
    assert not mine, "import cycles: " + "; ".join(" <-> ".join(c) for c in mine)


def test_the_core_imports_no_platform_and_no_adapter() -> None:
    """bot/ never imports discord, telegram or adapters/, not even lazily or for types."""
    wrong = [f"{MODULES[name].relative_to(ROOT)}:{i.line} imports {i.target}"
             for name in MODULES if name.split(".")[0] == "bot"
             for i in imports(name, MODULES[name])
             if i.target.split(".")[0] in ("adapters", "discord", "telegram")]
    assert not wrong, "\n".join(wrong)


def test_modules_are_small() -> None:
    """No module of the bot, the adapters or the benchmarks is over 400 lines."""
    every = {**MODULES, **sources("bench")}
    long = {str(p.relative_to(ROOT)): n for p in every.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_adapters_use_only_the_port() -> None:
    """An adapter imports from bot only bot.api; the command line also its process-level parts."""
    wrong = []
    for name, path in MODULES.items():
        if not name.startswith("adapters."):
            continue
        allowed = {"bot.api"} | (CLI_ALSO if name.startswith("adapters.cli") else set())
        for i in imports(name, path):
            target = _known(i.target) or i.target
            if target.split(".")[0] == "bot" and target not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{i.line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_cycle_finder_finds_cycles() -> None:
    """The check above would see a cycle: two modules importing each other, through a third too."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_adapter_can_move_money_itself() -> None:
    """Settling and refunding happen only inside the core's delivery protocol (issue 13)."""
    from bot.api import BotApi

    money = ("settle", "refund", "bind", "undeliverable", "reserve", "abandon", "grant_raw")
    offered = [name for name in dir(BotApi) if not name.startswith("_")
               and any(word in name for word in money)]
    assert offered == [], offered
    reaching = []
    for path in sorted(Path("adapters").rglob("*.py")):
        if path.parts[1] == "cli":  # the composition root opens and probes the store itself
            continue
        text = path.read_text("utf-8")
        for needle in ("._service", ".quotas", ".deliveries", ".store.", "Deliveries"):
            if needle in text:
                reaching.append(f"{path}: {needle}")
    assert reaching == [], reaching


# --- the providers cut along their seams (issue 13, item 5) -------------------------------------


def _top_imports(name: str) -> set[str]:
    """Every module ``name`` imports, lazily or for types too, as written."""
    return {i.target for i in imports(name, MODULES[name])}


def _calls(name: str, owner: str, attr: str) -> list[int]:
    """Lines where module ``name`` calls ``owner.attr(...)`` (``Image.open``, ``httpx.AsyncClient``)."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == attr and isinstance(node.func.value, ast.Name)
            and node.func.value.id == owner]


def test_extract_reads_only_response_shapes() -> None:
    """No HTTP, base64 or Pillow in extract.py: downloads, decoding and image checks are elsewhere."""
    banned = ("httpx", "aiohttp", "openai", "PIL", "pybase64", "base64", "binascii", "ssl",
              "socket", "bot.providers.wire.netguard", "bot.providers.wire.aio_transport")
    wrong = sorted(t for t in _top_imports("bot.providers.extract")
                   if any(t == b or t.startswith(b + ".") for b in banned))
    assert not wrong, wrong


def test_retry_is_only_the_policy() -> None:
    """retry.py parses nothing (no JSON, headers or dates): failures are classified on the wire."""
    allowed = {"__future__", "asyncio", "logging", "random", "collections.abc", "contextvars",
               "dataclasses", "typing", "bot.config", "bot.errors"}
    tree = ast.parse(MODULES["bot.providers.retry"].read_text())
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    extra = sorted(t for t in _top_imports("bot.providers.retry")
                   if t not in allowed and _known(t) not in allowed)
    assert (extra, functions) == ([], []), (extra, functions)


def test_only_the_wire_builds_http_clients() -> None:
    """httpx and aiohttp clients are made in bot/providers/wire; the openai client in sdk.py."""
    places = {("httpx", "AsyncClient"): "bot.providers.wire.",
              ("aiohttp", "ClientSession"): "bot.providers.wire.",
              ("openai", "AsyncOpenAI"): "bot.providers.sdk"}
    wrong = [f"{MODULES[name].relative_to(ROOT)}:{line} builds {owner}.{attr}"
             for name in MODULES if name.startswith("bot.")
             for (owner, attr), home in places.items()
             if not name.startswith(home) for line in _calls(name, owner, attr)]
    assert not wrong, "\n".join(wrong)
    assert _calls("bot.providers.wire.clients", "httpx", "AsyncClient")  # the finder finds
    assert _calls("bot.providers.sdk", "openai", "AsyncOpenAI")


#: Modules that open an image with Pillow that bot/images.py has already identified, and why.
PILLOW_OPENS_IDENTIFIED = {
    "bot.outfiles": "re-encodes a result to the format the operator asked for",
    "bot.providers.demo": "draws the request's references into its placeholder",
    "bot.warmup": "loads Pillow's codecs on images it made itself",
}


def test_one_image_identifier() -> None:
    """Only bot/images.py tells what bytes are: magic numbers, header sizes, the image's end."""
    wrong = [f"{MODULES[name].relative_to(ROOT)}:{line} opens an image with Pillow"
             for name in MODULES if name.startswith("bot.") and name != "bot.images"
             and name not in PILLOW_OPENS_IDENTIFIED for line in _calls(name, "Image", "open")]
    parts = {"bot.image_header": {"bot.images"}, "bot.image_end": {"bot.images"},
             "bot.sniff": {"bot.images", "bot.domain"}}  # domain: ImageData's type is sniffed
    wrong += [f"{name} imports {part}, a part of the identifier in bot/images.py"
              for name in MODULES for part, users in parts.items()
              if name not in users and part in _top_imports(name)]
    assert not wrong, "\n".join(wrong)
    assert _calls("bot.images", "Image", "open")  # the finder finds


def test_the_sdk_providers_share_one_base() -> None:
    """openai-chat and openai-images are SdkProviders: one client setup, written once."""
    from bot.providers.openai_chat import OpenAIChatProvider
    from bot.providers.openai_images import OpenAIImagesProvider
    from bot.providers.sdk import SdkProvider

    assert issubclass(OpenAIChatProvider, SdkProvider)
    assert issubclass(OpenAIImagesProvider, SdkProvider)
    for cls in (OpenAIChatProvider, OpenAIImagesProvider):
        own = {n for n in vars(cls) if n in ("probe", "list_models", "aclose", "_call")}
        assert not own, f"{cls.__name__} redefines {own}"


def test_catalog_records_are_named() -> None:
    """The built-in lineup, retirements and routes are keyword-built records, never tuples."""
    from bot.catalog import BUILTIN, RETIRED_IDS, RETIRED_NAMES, Builtin, ModelSpec, Retired
    from bot.providers.routes import ROUTES, Route

    for cls in (Builtin, ModelSpec, Retired, Route):
        assert all(f.kw_only for f in dataclasses.fields(cls)), cls
    for table, cls in ((BUILTIN, Builtin), (RETIRED_IDS, Retired), (RETIRED_NAMES, Retired),
                       (ROUTES, Route)):
        assert all(type(v) is cls for v in table.values())
