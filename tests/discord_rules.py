"""What Discord refuses in a message body or an interaction response, for the fake Discord.

Each rule names the documentation page it comes from. A refusal is ``(status, code, message)``
as Discord answers it: 400 / 50035 "Invalid Form Body" for a field over its limit, 400 / 50006
for an empty message (https://discord.com/developers/docs/topics/opcodes-and-status-codes
#json-json-error-codes).
"""

from __future__ import annotations

from typing import Any

Refusal = tuple[int, int, str]

# https://discord.com/developers/docs/resources/message#create-message-jsonform-params:
# content "up to 2000 characters"; "up to 10 rich embeds (up to 6000 characters)".
CONTENT_MAX = 2000
EMBEDS_MAX = 10
# https://discord.com/developers/docs/resources/message#embed-object-embed-limits
EMBED_LIMITS = {"title": 256, "description": 4096, "fields": 25, "field.name": 256,
                "field.value": 1024, "footer.text": 2048, "author.name": 256}
EMBED_TOTAL_MAX = 6000
# https://discord.com/developers/docs/components/reference#action-row: up to 5 action rows on
# a (non components-v2) message, up to 5 buttons in a row; #button: custom_id at most 100
# characters, label at most 80; #string-select: at most 25 options.
ROWS_MAX = 5
BUTTONS_PER_ROW = 5
CUSTOM_ID_MAX = 100
LABEL_MAX = 80
OPTIONS_MAX = 25
# https://discord.com/developers/docs/interactions/receiving-and-responding
# #interaction-response-object-interaction-callback-type: DEFERRED_UPDATE_MESSAGE (6) and
# UPDATE_MESSAGE (7) are "only valid for component-based interactions" (and modal submits
# that came from a component); a MODAL (9) "is not available for MODAL_SUBMIT and PING
# interactions"; autocomplete results (8) answer only autocomplete interactions (4).
PING, APPLICATION_COMMAND, COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
_ALLOWED_RESPONSES = {
    PING: {1},
    APPLICATION_COMMAND: {4, 5, 9},
    COMPONENT: {4, 5, 6, 7, 9},
    AUTOCOMPLETE: {8},
    MODAL_SUBMIT: {4, 5, 6, 7},
}


def _form(field: str, problem: str) -> Refusal:
    return 400, 50035, f"Invalid Form Body: {field}: {problem}"


def _embed_problem(i: int, embed: dict[str, Any]) -> Refusal | None:
    """The first limit ``embed`` breaks, if any."""
    texts = {"title": embed.get("title") or "", "description": embed.get("description") or "",
             "footer.text": (embed.get("footer") or {}).get("text") or "",
             "author.name": (embed.get("author") or {}).get("name") or ""}
    for key, text in texts.items():
        if len(text) > EMBED_LIMITS[key]:
            return _form(f"embeds.{i}.{key}", f"Must be {EMBED_LIMITS[key]} or fewer in length.")
    fields = embed.get("fields") or []
    if len(fields) > EMBED_LIMITS["fields"]:
        return _form(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
    for j, f in enumerate(fields):
        for key, limit in (("name", EMBED_LIMITS["field.name"]),
                           ("value", EMBED_LIMITS["field.value"])):
            if len(f.get(key) or "") > limit:
                return _form(f"embeds.{i}.fields.{j}.{key}", f"Must be {limit} or fewer in length.")
    return None


def _components_problem(rows: list[dict[str, Any]]) -> Refusal | None:
    """The first component limit ``rows`` break, if any."""
    if len(rows) > ROWS_MAX:
        return _form("components", f"Must be {ROWS_MAX} or fewer in length.")
    for r, row in enumerate(rows):
        if row.get("type") != 1:
            return _form(f"components.{r}", "top-level components must be action rows")
        children = row.get("components") or []
        if not 1 <= len(children) <= BUTTONS_PER_ROW:
            return _form(f"components.{r}.components", "Must be between 1 and 5 in length.")
        for c, comp in enumerate(children):
            where = f"components.{r}.components.{c}"
            if len(comp.get("custom_id") or "") > CUSTOM_ID_MAX:
                return _form(f"{where}.custom_id", "Must be 100 or fewer in length.")
            if len(comp.get("label") or "") > LABEL_MAX:
                return _form(f"{where}.label", "Must be 80 or fewer in length.")
            if len(comp.get("options") or []) > OPTIONS_MAX:
                return _form(f"{where}.options", "Must be 25 or fewer in length.")
            if comp.get("type") == 2 and comp.get("style") != 5 and not comp.get("custom_id"):
                return _form(f"{where}.custom_id", "This field is required")
    return None


def body_problem(payload: dict[str, Any]) -> Refusal | None:
    """The first limit a create or edit body breaks (content, embeds, components), if any."""
    content = payload.get("content")
    if content is not None and len(str(content)) > CONTENT_MAX:
        return _form("content", f"Must be {CONTENT_MAX} or fewer in length.")
    embeds = payload.get("embeds") or []
    if len(embeds) > EMBEDS_MAX:
        return _form("embeds", f"Must be {EMBEDS_MAX} or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        if (problem := _embed_problem(i, embed)) is not None:
            return problem
        total += sum(len(str(embed.get(k) or "")) for k in ("title", "description"))
        total += sum(len(f.get("name") or "") + len(f.get("value") or "")
                     for f in embed.get("fields") or [])
    if total > EMBED_TOTAL_MAX:
        return _form("embeds", f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}")
    return _components_problem(payload.get("components") or [])


def empty_problem(content: str, embeds: list[Any], files: int, components: list[Any],
                  payload: dict[str, Any]) -> Refusal | None:
    """Discord's 50006 "Cannot send an empty message".

    https://discord.com/developers/docs/resources/message#create-message: "at least one of
    content, embeds, sticker_ids, components, files[n], or poll" must be given (content of
    only whitespace counts as none).
    """
    if content.strip() or embeds or files or components or payload.get("sticker_ids") or (
            payload.get("poll")):
        return None
    return 400, 50006, "Cannot send an empty message"


def response_problem(interaction_type: int, response_type: int) -> Refusal | None:
    """A response type the interaction's type does not allow (see _ALLOWED_RESPONSES)."""
    if response_type in _ALLOWED_RESPONSES.get(interaction_type, set()):
        return None
    return _form("type", f"response type {response_type} is not valid for an interaction of "
                         f"type {interaction_type}")


def reference_problem(known: bool, reference: dict[str, Any]) -> Refusal | None:
    """A reply to a message that does not exist (or was deleted).

    https://discord.com/developers/docs/resources/message#message-reference-structure:
    ``fail_if_not_exists`` (default true) makes Discord "error if the referenced message
    doesn't exist instead of sending as a normal (non-reply) message".
    """
    if known or reference.get("fail_if_not_exists") is False:
        return None
    return _form("message_reference", "Unknown message")
