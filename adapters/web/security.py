"""Console secrets, signed visitor ids, CSRF tokens, operator sessions and login rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.api import Settings

TOKEN_FILE = "console-token"
SECRET_FILE = "console-secret"
VISITOR_COOKIE = "ib_web"
SESSION_COOKIE = "ib_op"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SESSION_SECONDS = 12 * 3600


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The file's stripped text, or a new value written with mode 0600 (first writer wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text("utf-8").strip()
        if value:
            return value
        raise ValueError(f"{path} is empty; delete it to have a new one made") from None
    value = make()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def console_token(settings: Settings) -> str:
    """The operator token: the ``[web] token_env`` variable, else ``data_dir/console-token``."""
    from_env = os.environ.get(settings.web.token_env, "").strip()
    if from_env:
        return from_env
    return _read_or_create(settings.bot.data_dir / TOKEN_FILE, lambda: secrets.token_urlsafe(32))


def console_secret(data_dir: Path) -> bytes:
    """The key that signs visitor cookies and CSRF tokens (``data_dir/console-secret``)."""
    return _read_or_create(data_dir / SECRET_FILE, lambda: secrets.token_hex(32)).encode()


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the real one."""
    return hmac.compare_digest(given.strip().encode(), expected.encode())


class Signer:
    """HMAC signatures for visitor ids and CSRF tokens."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def new_visitor(self) -> tuple[str, str]:
        """A fresh anonymous visitor id and its cookie value."""
        uid = secrets.token_urlsafe(9)
        return uid, f"{uid}.{self._mac('visitor', uid)}"

    def visitor(self, cookie: str | None) -> str | None:
        """The visitor id in a cookie whose signature checks out, else None."""
        if not cookie or "." not in cookie:
            return None
        uid, _, mac = cookie.rpartition(".")
        if not uid or not hmac.compare_digest(mac.encode(), self._mac("visitor", uid).encode()):
            return None
        return uid

    def csrf(self, uid: str) -> str:
        """The CSRF token for a visitor (stable for the life of the cookie)."""
        return self._mac("csrf", uid)

    def csrf_ok(self, uid: str | None, token: str | None) -> bool:
        """True when ``token`` is ``uid``'s CSRF token."""
        if not uid or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf(uid).encode())


class Sessions:
    """Operator sessions, in memory (a restart logs operators out)."""

    def __init__(self, ttl: float = SESSION_SECONDS, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._expires: dict[str, float] = {}

    async def open(self) -> str:
        """A new session id."""
        now = self._clock()
        self._expires = {k: v for k, v in self._expires.items() if v > now}
        sid = secrets.token_urlsafe(32)
        self._expires[sid] = now + self._ttl
        return sid

    async def load(self, sid: str | None) -> None:
        """Nothing to read: the sessions live here (adapters/web/sessions_redis.py shares them)."""

    def valid(self, sid: str | None) -> bool:
        """True for a live session."""
        return bool(sid) and self._expires.get(sid or "", 0.0) > self._clock()

    async def close(self, sid: str | None) -> None:
        """End a session."""
        self._expires.pop(sid or "", None)


@dataclass(slots=True)
class LoginLimiter:
    """Wrong tokens per client address in a sliding window; it never stands before a right one.

    Refusing every attempt after N failures lets anyone who shares the operator's address (or
    spoofs enough of them) lock the operator out. So the token is always checked: a right one
    logs in whatever came before; a wrong one past the allowance is answered 429 after a delay
    (``tarpit``) that slows sequential guessing from that address. Guessing in parallel is bounded
    by the token's strength (256 bits when generated; a weak one in the environment is warned of).
    """

    per_client: int = 5
    window: float = 600.0
    tarpit: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _clients: dict[str, deque[float]] = field(default_factory=dict)

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def retry_after(self, client: str) -> int:
        """Seconds until ``client``'s wrong attempts are answered plainly again (0: now)."""
        now = self.clock()
        mine = self._clients.get(client)
        if mine is None:
            return 0
        self._trim(mine, now)
        if len(mine) < self.per_client:
            return 0
        return max(1, int(mine[-self.per_client] + self.window - now) + 1)

    def failed(self, client: str) -> int:
        """Record a wrong attempt; non-zero (seconds) when it came past the allowance."""
        wait = self.retry_after(client)
        now = self.clock()
        self._clients.setdefault(client, deque(maxlen=self.per_client)).append(now)
        if len(self._clients) > 10_000:  # bound memory under a flood of addresses
            self._clients = {k: v for k, v in self._clients.items()
                             if v and v[-1] > now - self.window}
        return wait

    def succeeded(self, client: str) -> None:
        """Forget a client's failures (the right token was given)."""
        self._clients.pop(client, None)
