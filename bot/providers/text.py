"""Text mode of a route (/describe): an image in, the model's words out.

- Native Gemini: ``generateContent`` with ``generationConfig.responseModalities = ["TEXT"]``
  (https://ai.google.dev/api/generate-content#generationconfig), the image as an ``inline_data``
  part after the instruction, as Google's image-understanding guide sends it
  (https://ai.google.dev/gemini-api/docs/image-understanding); the answer is the text of
  ``candidates[0].content.parts`` (thought parts skipped), a blocked prompt is
  ``promptFeedback.blockReason``.
- OpenAI-compatible routes (OpenRouter, relays): one ``chat.completions`` user message with a
  ``text`` and an ``image_url`` (data URL) content part; the answer is
  ``choices[0].message.content`` (https://platform.openai.com/docs/api-reference/chat/create).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bot.domain import ImageData
from bot.errors import NoImage, Refused
from bot.providers.wire.b64 import encode_base64


@dataclass(frozen=True, slots=True)
class TextRequest:
    """One text-mode call: the model (as the route spells it), the instruction and the image."""

    model_id: str
    instruction: str
    image: ImageData = field(repr=False)
    timeout: float = 60.0


@runtime_checkable
class TextProvider(Protocol):
    """A provider that also answers in words (``text``)."""

    async def text(self, request: TextRequest) -> str:
        """The model's text for ``request``."""
        ...


async def gemini_text_body(request: TextRequest) -> bytes:
    """The generateContent body asking for text only."""
    parts = [{"text": request.instruction},
             {"inline_data": {"mime_type": request.image.mime,
                              "data": await encode_base64(request.image.data)}}]
    return json.dumps({"contents": [{"role": "user", "parts": parts}],
                       "generationConfig": {"responseModalities": ["TEXT"]}}).encode()


def gemini_text(body: dict[str, Any]) -> str:
    """The answer's text; Refused when the prompt or the answer was blocked, NoImage if empty."""
    feedback = body.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        raise Refused(str(feedback["blockReason"]))
    candidates = body.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else {}
    first = first if isinstance(first, dict) else {}
    if first.get("finishReason") in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST"):
        raise Refused(finish_reason=str(first["finishReason"]))
    content = first.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    words = [str(p["text"]) for p in (parts if isinstance(parts, list) else [])
             if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")]
    text = "".join(words).strip()
    if not text:
        raise NoImage()
    return text


async def chat_text_messages(request: TextRequest) -> list[dict[str, Any]]:
    """The chat completion's one user message: the instruction and the image as a data URL."""
    url = f"data:{request.image.mime};base64,{await encode_base64(request.image.data)}"
    return [{"role": "user", "content": [{"type": "text", "text": request.instruction},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def chat_text(body: dict[str, Any]) -> str:
    """``choices[0].message.content`` (a string or a list of text parts); NoImage when empty."""
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if isinstance(first, dict) and first.get("finish_reason") == "content_filter":
        raise Refused(finish_reason="content_filter")
    text = content.strip() if isinstance(content, str) else ""
    if not text:
        raise NoImage()
    return text


def demo_text(image: ImageData) -> str:
    """The demo route's answer: prompts made from what can be seen without a model."""
    shape = ("square" if image.width == image.height else
             "wide" if image.width > image.height else "tall")
    return "\n".join((
        f"1. A {shape} digital illustration with soft gradients and a bold DEMO label",
        f"2. A {shape} minimalist poster of layered color fields, studio lighting",
        "3. A watercolor study of the same composition, loose brushwork, white paper showing",
    ))
