"""The Discord invite link: the bot's application id, the scopes and the permissions it needs.

https://discord.com/developers/docs/topics/oauth2#bot-authorization-flow: ``/oauth2/authorize``
with ``client_id``, ``scope=bot applications.commands`` and a ``permissions`` integer
(https://discord.com/developers/docs/topics/permissions#permissions-bitwise-permission-flags).
The bot posts results, files, embeds and buttons in channels and threads and reads the message
a user replies to; nothing more. A bot token's first dot-separated part is the base64 of the
bot's user id, which is its application's id for every bot made since 2019.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

PERMISSIONS = {
    "VIEW_CHANNEL": 1 << 10,
    "SEND_MESSAGES": 1 << 11,
    "EMBED_LINKS": 1 << 14,
    "ATTACH_FILES": 1 << 15,
    "READ_MESSAGE_HISTORY": 1 << 16,
    "SEND_MESSAGES_IN_THREADS": 1 << 38,
}
SCOPES = ("bot", "applications.commands")


def client_id_from_token(token: str) -> str | None:
    """The application id encoded in a bot token, or None when it is not a bot token."""
    head = token.strip().split(".", 1)[0]
    if not head:
        return None
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=False).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if decoded.isdigit() else None


def invite_url(client_id: str) -> str:
    """The invite link that adds the bot with its slash commands and permissions."""
    query = urllib.parse.urlencode({"client_id": client_id, "scope": " ".join(SCOPES),
                                    "permissions": sum(PERMISSIONS.values())})
    return f"https://discord.com/oauth2/authorize?{query}"
