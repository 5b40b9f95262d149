"""Database URLs as they may be shown: the password masked, and kept apart for the redactor."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

_MASK = "***"
_SECRET_PARAMS = frozenset({"password"})


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed port and the like: show nothing of it
        return "<unparsable database URL>"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{_MASK}@{hostinfo}"
    query = urlencode([(k, _MASK if k in _SECRET_PARAMS else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The password(s) a URL carries, as written and decoded, for masking wherever they appear."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return [url]  # unparsable: mask it whole
    found += [v for k, v in parse_qsl(parts.query) if k in _SECRET_PARAMS and v]
    raw = parts.netloc.rpartition("@")[0].partition(":")[2]
    return sorted({s for s in [*found, raw, *(unquote(s) for s in found)] if s})
