"""Issue 12, items 1-6: host names, a TLS proxy, body size, visitor pools, others' turns, lockout."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from adapters.web.network import NetworkPolicy, pool_id
from bot.config import load_settings
from bot.errors import ConfigError
from tests.fake_discord import FakeDiscord, discord_settings, private_answer, result_of, running_bot
from tests.test_web_harness import TOKEN, Factory, Running, Visitor, running_console, turn_of, visitor

SECRET = b"k" * 32  # the harness's console secret
#: What the README's nginx recipe sends (besides the browser's own headers).
RECIPE = {"Host": "bot.example.com", "X-Forwarded-For": "203.0.113.9",
          "X-Forwarded-Proto": "https", "X-Forwarded-Host": "bot.example.com"}
BROWSER = {"Origin": "https://bot.example.com", "Sec-Fetch-Site": "same-origin"}


def csrf_of(page: str) -> str:
    """The CSRF token a page carries."""
    found = re.search(r'"csrf": "([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def port_of(run: Running) -> int:
    """The console's port."""
    return int(run.url.rpartition(":")[2])


# ----- 1. Host header / DNS rebinding -------------------------------------------------------


async def test_only_our_own_host_names_are_answered(settings_factory: Factory) -> None:
    async with running_console(settings_factory, web={"allowed_hosts": ["bot.lan"]}) as run, \
            visitor(run) as v:
        port = port_of(run)
        for host in ("evil.example", f"evil.example:{port}", f"rebind.127.0.0.1.nip.io:{port}",
                     "", "bot.lan.evil.example"):
            for path in ("/", "/static/playground.js", "/operator", "/img/x/0", "/api/jobs/x"):
                async with v.http.get(run.url + path, headers={"Host": host}) as res:
                    assert res.status == 421, (host, path)
        # A rebound page posting to itself: same "origin", valid cookie and token, still refused.
        rebound = f"evil.example:{port}"
        status, body = await v.post("/api/jobs", {"prompt": "spend it", "csrf": v.csrf},
                                    headers={"Host": rebound, "Origin": f"http://{rebound}"})
        assert status == 421 and "does not answer to that address" in body["error"]
        for host in (f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}", "LOCALHOST.",
                     f"bot.lan:{port}"):
            async with v.http.get(run.url + "/", headers={"Host": host}) as res:
                assert res.status == 200, host
        assert await run.ledger_kinds() == []


def test_web_network_keys_are_checked_with_a_clear_line(tmp_path: Path) -> None:
    cases = {'public_url = "bot.example.com"': "expected scheme://host[:port]",
             'public_url = "https://bot.example.com/console"': "expected scheme://host[:port]",
             'trusted_proxies = ["10.0.0.0/33"]': "'10.0.0.0/33' is not an IP address or CIDR",
             'visitor_pool = "everyone"': "visitor_pool",
             "max_body_mb = 0": "max_body_mb"}
    for line, expected in cases.items():
        path = tmp_path / "config.toml"
        path.write_text(f"[web]\n{line}\n", encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load_settings(path, {})
        assert expected in str(info.value) and "Traceback" not in str(info.value), line
    path.write_text('[web]\npublic_url = "https://Bot.example.com:8443/"\n'
                    'trusted_proxies = ["127.0.0.1", "fd00::/8"]\n', encoding="utf-8")
    settings = load_settings(path, {})
    assert settings.web.public_url == "https://Bot.example.com:8443"
    network = NetworkPolicy.from_settings(settings, "127.0.0.1")
    assert "bot.example.com" in network.hosts and network.exposed
    assert network.public_origin == "https://bot.example.com:8443"  # as browsers send it
    for url, origin in (("https://BOT.example.com:443", "https://bot.example.com"),
                        ("http://[::1]:80", "http://[::1]")):
        path.write_text(f'[web]\npublic_url = "{url}"\n', encoding="utf-8")
        assert NetworkPolicy.from_settings(load_settings(path, {}), "::1").public_origin == origin


# ----- 2. Behind a TLS proxy ----------------------------------------------------------------


@pytest.fixture
async def raw_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps no cookies (the test sends them as a browser behind TLS would)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        yield http


async def proxied_visit(run: Running, http: aiohttp.ClientSession, headers: dict[str, str]
                        ) -> tuple[str, str, str]:
    """GET / as the proxy forwards it: (cookie header, Set-Cookie line, page)."""
    async with http.get(run.url + "/", headers=headers) as res:
        assert res.status == 200, await res.text()
        set_cookie = res.headers["Set-Cookie"]
        page = await res.text()
    return set_cookie.split(";", 1)[0], set_cookie, page


async def test_posts_work_behind_the_readme_proxy_recipe(settings_factory: Factory,
                                                         raw_http: aiohttp.ClientSession) -> None:
    async with running_console(settings_factory, web={
            "public_url": "https://bot.example.com", "trusted_proxies": ["127.0.0.0/8"]}) as run:
        cookie, set_cookie, page = await proxied_visit(run, raw_http, RECIPE)
        assert "Secure" in set_cookie and "HttpOnly" in set_cookie
        # The client address is the one the proxy saw: its pool is the visitor's identity.
        assert f"web:{pool_id(SECRET, '203.0.113.9')}" in page
        headers = {**RECIPE, **BROWSER, "Cookie": cookie, "X-CSRF-Token": csrf_of(page)}
        async with raw_http.post(run.url + "/api/jobs", data={"prompt": "behind nginx"},
                                 headers=headers) as res:
            assert res.status == 202, await res.text()
            job = (await res.json())["job"]
        async with asyncio.timeout(10):
            while True:
                async with raw_http.get(f"{run.url}/api/jobs/{job}", headers=headers) as res:
                    data = await res.json()
                if data.get("state") == "done":
                    break
                await asyncio.sleep(0.05)
        # The operator's session cookie is Secure too, and the login works through the proxy.
        async with raw_http.post(run.url + "/operator/login", data={
                "token": TOKEN, "csrf": csrf_of(page)}, headers={**RECIPE, **BROWSER,
                                                                 "Cookie": cookie},
                allow_redirects=False) as res:
            assert res.status == 303 and "Secure" in res.headers["Set-Cookie"]
        # A client's own X-Forwarded-For arrives first in the chain ($proxy_add_x_forwarded_for):
        # the address the proxy saw is what counts.
        _, _, spoofed = await proxied_visit(run, raw_http, {
            **RECIPE, "X-Forwarded-For": "198.51.100.66, 203.0.113.9"})
        assert f"web:{pool_id(SECRET, '203.0.113.9')}" in spoofed
        # Through the proxy, a forwarded Host that is not ours is refused like a direct one.
        async with raw_http.get(run.url + "/", headers={
                **RECIPE, "X-Forwarded-Host": "evil.example"}) as res:
            assert res.status == 421


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
        settings_factory: Factory, raw_http: aiohttp.ClientSession) -> None:
    async with running_console(settings_factory, web={
            "public_url": "https://bot.example.com", "trusted_proxies": ["192.0.2.1"]}) as run:
        _, _, page = await proxied_visit(run, raw_http, RECIPE)
        assert f"web:{pool_id(SECRET, '127.0.0.1')}" in page  # the TCP peer, not the header
        assert pool_id(SECRET, "203.0.113.9") not in page
        port = port_of(run)
        async with raw_http.get(run.url + "/", headers={
                "Host": f"localhost:{port}", "X-Forwarded-Host": "evil.example",
                "X-Forwarded-Proto": "https"}) as res:
            assert res.status == 200  # X-Forwarded-Host ignored: the Host is ours
            assert "Secure" not in res.headers["Set-Cookie"]  # X-Forwarded-Proto ignored


# ----- 3. Total request size ---------------------------------------------------------------


async def test_a_declared_oversize_body_is_refused_before_it_is_read(
        settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        cookie = f"ib_web={v.http.cookie_jar.filter_cookies(URL(run.url))['ib_web'].value}"
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(run))
        writer.write((f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port_of(run)}\r\n"
                      f"Cookie: {cookie}\r\nX-CSRF-Token: {v.csrf}\r\n"
                      "Content-Type: multipart/form-data; boundary=xx\r\n"
                      "Content-Length: 400000000\r\n\r\n--xx\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        assert await run.ledger_kinds() == []


async def test_a_chunked_body_is_cut_off_at_the_cap(settings_factory: Factory) -> None:
    sent = [0]

    async def endless() -> AsyncIterator[bytes]:
        head = (b'--xx\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n'
                b'--xx\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
                b"Content-Type: image/png\r\n\r\n")
        sent[0] += len(head)
        yield head
        while True:
            sent[0] += 65536
            yield b"\0" * 65536

    async with running_console(settings_factory, web={"max_body_mb": 2}) as run, \
            visitor(run) as v:
        async with asyncio.timeout(20), v.http.post(
                run.url + "/api/jobs", data=endless(), headers={
                    "X-CSRF-Token": v.csrf,
                    "Content-Type": "multipart/form-data; boundary=xx"}) as res:
            assert res.status == 413
            assert (await res.json())["error"] == "That request is too large: at most 2 MB in all."
            # The server stopped reading at the cap (plus socket buffers), not at the file limit
            # of 4 x 20 MB it used to measure up to.
            assert sent[0] < 24_000_000, sent[0]
        assert await run.ledger_kinds() == []


async def test_thousands_of_small_fields_are_refused(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        form = aiohttp.FormData(default_to_multipart=True)  # the console reads it streaming
        form.add_field("prompt", "many fields")
        for i in range(2000):
            form.add_field(f"f{i}", "x" * 100)
        status, body = await v.post("/api/jobs", form)
        assert status == 413 and "too many fields" in body["error"]
        too_long = aiohttp.FormData(default_to_multipart=True)
        too_long.add_field("prompt", "长" * 3000)  # 9000 bytes: a field is held to 8000
        for data in (too_long, {"prompt": "x" * 9000}):  # multipart, then urlencoded
            status, body = await v.post("/api/jobs", data)
            assert status == 413 and body["error"] == "That text is too long. Please shorten it."
        assert await run.ledger_kinds() == []


def test_default_body_cap_fits_every_reference(settings_factory: Factory) -> None:
    from adapters.web.inbound import upload_cap
    from bot.bootstrap import build_core

    core = build_core(settings_factory(limits={"max_input_mb": 10}))
    assert upload_cap(core.api) == 10_000_000 * 14 + 1_000_000  # 14 references at most
    core = build_core(settings_factory(web={"max_body_mb": 3.5}))
    assert upload_cap(core.api) == 3_500_000


# ----- 4. Visitor pools ---------------------------------------------------------------------


async def test_a_cleared_cookie_is_not_a_fresh_allowance(settings_factory: Factory) -> None:
    web = {"public_url": "https://bot.example.com", "visitor_daily_credits": 5}
    async with running_console(settings_factory, web=web) as run:
        async with visitor(run) as first:
            assert "5 credits" in first.page
            done = await first.imagine("a lantern")
            assert done["state"] == "done" and 'data-left="1"' in done["quota"]
        async with visitor(run) as second:  # same address, no cookie: the same pool
            assert "1 credits" in second.page or 'data-left="1"' in second.page
            status, refused = await second.submit("another lantern")  # told before any job
            assert status == 422 and "Not enough credits" in refused["error"]
            assert "a lantern" not in second.page  # the pool pays; each browser sees its own
        kinds = await run.ledger_kinds()
        assert kinds.count("reserve") == 1 and kinds.count("settle") == 1


async def test_cookie_pools_and_loopback_consoles_keep_one_allowance_per_browser(
        settings_factory: Factory) -> None:
    for web in ({"visitor_daily_credits": 5},
                {"public_url": "https://bot.example.com", "visitor_daily_credits": 5,
                 "visitor_pool": "cookie"}):
        async with running_console(settings_factory, web=web) as run:
            for _ in range(2):
                async with visitor(run) as v:
                    assert (await v.imagine("a kite"))["state"] == "done"


def test_pools_group_ipv6_by_64_and_unwrap_mapped_ipv4() -> None:
    same = pool_id(SECRET, "2001:db8:1:2::1")
    assert same == pool_id(SECRET, "2001:db8:1:2:ffff:ffff:ffff:9")
    assert same != pool_id(SECRET, "2001:db8:1:3::1")
    assert pool_id(SECRET, "::ffff:198.51.100.7") == pool_id(SECRET, "198.51.100.7")
    assert pool_id(SECRET, "198.51.100.7") != pool_id(SECRET, "198.51.100.8")
    assert re.fullmatch(r"ip-[0-9A-Za-z_-]{16}", same)  # fits the operator's user field


# ----- 5. Continuing someone else's turn -------------------------------------------------------


async def test_parent_must_be_the_visitors_own_turn(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as owner:
        parent = turn_of(await owner.imagine("my secret garden", model="nano-banana-pro"))
        async with visitor(run) as other:
            result = await other.imagine("make it mine", parent=parent)
            assert result["state"] == "failed" and "Only the requester" in result["html"]
        assert [t.parent_id for t in await run.core.store.recent_turns(10)] == [None]
        assert (await run.ledger_kinds()).count("reserve") == 1
        edited = await owner.imagine("at dusk", parent=parent)  # the owner still may
        assert edited["state"] == "done"


async def test_a_discord_modal_for_someone_elses_turn_is_refused(
        settings_factory: Factory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        rae, sam = fake.user("rae"), fake.user("sam")
        first = await result_of(fake, await fake.slash("imagine", prompt="a dune", user=rae))
        edit_id = next(cid for _, cid in first.buttons() if cid.startswith("ib:edit:"))
        press = await fake.press(edit_id, user=rae)
        await fake.wait_for("modal", lambda e: e.interaction is press)
        # Sam submits a modal with the custom id of the one shown to Rae (a client-chosen id).
        press.user = sam
        submit = await fake.submit_modal(press, {"instruction": "make it mine"})
        answer = await private_answer(fake, submit)
        assert answer.text == "Only the requester (or an admin) can do that."
        assert len(await bot.core.store.recent_turns(10)) == 1
        assert not fake.errors


# ----- 6. Operator lockout ---------------------------------------------------------------------


async def login(run: Running, token: str, headers: dict[str, str] | None = None
                ) -> tuple[Visitor, int]:
    """A fresh browser that tries ``token``."""
    v = Visitor(run.url)
    await v.open("/operator")
    status, _ = await v.post("/operator/login", {"token": token, "csrf": v.csrf}, csrf="",
                             headers=headers)
    return v, status


async def test_an_attackers_failures_cannot_lock_the_operator_out(
        settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run:
        attacker, status = await login(run, "guess-0")
        try:
            statuses = [status]
            for i in range(1, 8):
                status, _ = await attacker.post("/operator/login", {
                    "token": f"guess-{i}", "csrf": attacker.csrf}, csrf="")
                statuses.append(status)
            assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
        finally:
            await attacker.close()
        operator, status = await login(run, TOKEN)  # same address, right after the flood
        try:
            assert status == 303
            assert "web.op" not in await operator.open("/operator")
            assert 'name="token"' not in operator.page  # the dashboard, not the login form
        finally:
            await operator.close()
