"""What Discord refuses in a message body or an interaction response, for the fake Discord.

Each rule names the documentation page it comes from. A refusal is ``(status, code, message)``
as Discord answers it: 400 / 50035 "Invalid Form Body" for a field over its limit, 400 / 50006
for an empty message (https://discord.com/developers/docs/topics/opcodes-and-status-codes
#json-json-error-codes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
#: https://discord.com/developers/docs/components/reference#button-button-styles: 6 = premium.
PREMIUM = 6
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


def _components_problem(rows: list[dict[str, Any]], *, rows_max: int = ROWS_MAX
                        ) -> Refusal | None:
    """The first component limit ``rows`` break, if any."""
    if len(rows) > rows_max:
        return _form("components", f"Must be {ROWS_MAX} or fewer in length.")
    for r, row in enumerate(rows):
        if row.get("type") != 1:
            # Text displays, galleries, containers... need the IS_COMPONENTS_V2 flag.
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
            if comp.get("type") == 2 and comp.get("style") == PREMIUM:
                # #button: a premium button carries the sku_id of a purchasable SKU and no
                # custom_id, label, url or emoji (Discord draws the SKU's name and price).
                if not comp.get("sku_id") or any(comp.get(k) for k in (
                        "custom_id", "label", "url", "emoji")):
                    return _form(f"{where}.sku_id", "a premium button has a sku_id and no "
                                                    "custom_id, label, url or emoji")
            elif comp.get("type") == 2 and comp.get("style") != 5 and not comp.get("custom_id"):
                return _form(f"{where}.custom_id", "This field is required")
    return None


def body_problem(payload: dict[str, Any], *, v2: bool = False,
                 files: frozenset[str] = frozenset()) -> Refusal | None:
    """The first limit a create or edit body breaks (content, embeds, components), if any.

    ``v2``: the message is (or becomes) a components-v2 message; ``files``: the filenames its
    ``attachment://`` references may name (uploaded now or kept).
    """
    if v2 or int(payload.get("flags") or 0) & IS_COMPONENTS_V2:
        return v2_problem(payload, files)
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


# ----- components v2 -------------------------------------------------------------------------
# https://discord.com/developers/docs/components/reference: the message flag ``1 << 15``
# (IS_COMPONENTS_V2) "can't be removed from that message" once sent; with it "the content and
# embeds fields will no longer work", "attachments won't show by default - they must be exposed
# through components", poll and stickers are disabled, and "messages allow up to 40 total
# components". Create Message: "when the flag IS_COMPONENTS_V2 is set, the message can only
# contain components. Providing content, embeds, sticker_ids, poll, or shared_client_theme will
# fail with a 400 BAD REQUEST response"
# (https://discord.com/developers/docs/resources/message#create-message-jsonform-params).
IS_COMPONENTS_V2 = 1 << 15
V2_COMPONENTS_MAX = 40
# discord.py's LayoutView: "a maximum of 4000 display characters across all its items" (the
# limit Discord applies to a v2 message's text displays together).
V2_TEXT_MAX = 4000
GALLERY_ITEMS_MAX = 10
ALT_TEXT_MAX = 1024
# Component types (#component-object-component-types) and where each may go: top level of a
# message, inside a Container (#container-container-child-components), inside an Action Row
# (#action-row-action-row-child-components); Text Display is a Section's only child kind.
ACTION_ROW, BUTTON, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE, SECTION, CONTAINER = (
    1, 2, 10, 11, 12, 13, 9, 17)
_TOP_LEVEL = {ACTION_ROW, SECTION, TEXT_DISPLAY, MEDIA_GALLERY, FILE, 14, CONTAINER}
_IN_CONTAINER = _TOP_LEVEL - {CONTAINER}
_IN_ROW = {BUTTON, 3, 5, 6, 7, 8}
_FORBIDDEN_WITH_V2 = ("content", "embeds", "sticker_ids", "poll", "shared_client_theme")


def flag_removed(before: int, payload: dict[str, Any]) -> Refusal | None:
    """An edit that would take IS_COMPONENTS_V2 off a message (Discord: it cannot be removed)."""
    if before & IS_COMPONENTS_V2 and "flags" in payload and not (
            int(payload.get("flags") or 0) & IS_COMPONENTS_V2):
        return _form("flags", "IS_COMPONENTS_V2 cannot be removed from a message")
    return None


def v2_problem(payload: dict[str, Any], files: frozenset[str]) -> Refusal | None:
    """The first rule a components-v2 body breaks, if any (see the comment above)."""
    for key in _FORBIDDEN_WITH_V2:
        if payload.get(key):
            return _form(key, "Cannot be used with the IS_COMPONENTS_V2 flag")
    components = payload.get("components")
    if components is None:
        return None  # an edit that leaves the components as they are
    tally = _Tally()
    for i, comp in enumerate(components):
        problem = _v2_component(comp, f"components.{i}", _TOP_LEVEL, files, tally)
        if problem is not None:
            return problem
    if tally.count > V2_COMPONENTS_MAX:
        return _form("components", f"Must be {V2_COMPONENTS_MAX} or fewer in total.")
    if tally.text > V2_TEXT_MAX:
        return _form("components", f"Text displays must be {V2_TEXT_MAX} or fewer in length.")
    return None


@dataclass
class _Tally:
    """What a v2 body adds up to: components (nested ones too), text, custom_ids."""

    count: int = 0
    text: int = 0
    ids: set[str] = field(default_factory=set)


def _v2_component(comp: dict[str, Any], where: str, allowed: set[int], files: frozenset[str],
                  tally: _Tally) -> Refusal | None:
    kind = comp.get("type")
    tally.count += 1
    if kind not in allowed:
        return _form(f"{where}.type", f"component type {kind} is not allowed here")
    if kind == TEXT_DISPLAY:
        if not comp.get("content"):
            return _form(f"{where}.content", "This field is required")
        tally.text += len(str(comp["content"]))
    elif kind == MEDIA_GALLERY:
        return _gallery(comp, where, files)
    elif kind == FILE:
        return _media((comp.get("file") or {}).get("url"), f"{where}.file", files,
                      attachment_only=True)
    elif kind == ACTION_ROW:
        return _v2_row(comp, where, tally)
    elif kind == CONTAINER:
        for j, child in enumerate(comp.get("components") or []):
            if (problem := _v2_component(child, f"{where}.components.{j}", _IN_CONTAINER, files,
                                         tally)) is not None:
                return problem
    elif kind == SECTION:
        children = comp.get("components") or []
        if not 1 <= len(children) <= 3:
            return _form(f"{where}.components", "Must be between 1 and 3 in length.")
        for j, child in enumerate(children):
            if (problem := _v2_component(child, f"{where}.components.{j}", {TEXT_DISPLAY},
                                         files, tally)) is not None:
                return problem
        tally.count += 1  # the accessory
    return None


def _v2_row(row: dict[str, Any], where: str, tally: _Tally) -> Refusal | None:
    children = row.get("components") or []
    if not 1 <= len(children) <= BUTTONS_PER_ROW:
        return _form(f"{where}.components", "Must be between 1 and 5 in length.")
    tally.count += len(children)
    if any(c.get("type") not in _IN_ROW for c in children):
        return _form(f"{where}.components", "an action row holds only buttons or one select")
    for c in children:
        # #anatomy-of-a-component-custom-id: "Multiple components on the same message must not
        # share the same custom_id."
        custom_id = c.get("custom_id")
        if custom_id and custom_id in tally.ids:
            return _form(f"{where}.components", f"duplicate custom_id {custom_id!r}")
        if custom_id:
            tally.ids.add(custom_id)
    return _components_problem([row], rows_max=V2_COMPONENTS_MAX)


def _gallery(comp: dict[str, Any], where: str, files: frozenset[str]) -> Refusal | None:
    items = comp.get("items") or []
    if not 1 <= len(items) <= GALLERY_ITEMS_MAX:
        return _form(f"{where}.items", f"Must be between 1 and {GALLERY_ITEMS_MAX} in length.")
    for k, item in enumerate(items):
        if len(item.get("description") or "") > ALT_TEXT_MAX:
            return _form(f"{where}.items.{k}.description",
                         f"Must be {ALT_TEXT_MAX} or fewer in length.")
        problem = _media((item.get("media") or {}).get("url"), f"{where}.items.{k}.media", files)
        if problem is not None:
            return problem
    return None


def _media(url: object, where: str, files: frozenset[str], *,
           attachment_only: bool = False) -> Refusal | None:
    """An unfurled media item's url: ``attachment://<filename>`` of a file the message has.

    https://discord.com/developers/docs/components/reference#unfurled-media-item: "supports
    arbitrary urls and attachment://<filename> references"; a File component "only supports
    attachment references".
    """
    if not isinstance(url, str) or not url:
        return _form(f"{where}.url", "This field is required")
    if url.startswith("attachment://"):
        if url.removeprefix("attachment://") not in files:
            return _form(f"{where}.url", "attachment reference names no uploaded file")
        return None
    if attachment_only or not url.startswith(("https://", "http://")):
        return _form(f"{where}.url", "Not a well formed URL.")
    return None
