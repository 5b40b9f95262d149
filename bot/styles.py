"""Style presets (``--style NAME``) and the one place a request's prompt text is composed.

A preset is a template around the user's words (``{prompt}``), in the spirit of the presets every
AstrBot Gemini plugin ships (AstrBot #3785). Operators add or replace presets in config
(``[styles.NAME] template = "..."``); names are shown localized (``style.NAME`` in the catalogs)
or as the operator's ``label``.

Negative prompts (``--no a, b``): Gemini image models take no negative-prompt parameter, and
Google's prompting guide for them recommends saying what to leave out in words ("semantic negative
prompts", https://ai.google.dev/gemini-api/docs/image-generation#prompt-guide; the old Imagen
``negativePrompt`` field is gone with the Imagen endpoints,
https://docs.cloud.google.com/vertex-ai/generative-ai/docs/image/omit-content-using-a-negative-prompt).
So the list becomes one closing instruction after the description, "Leave out entirely: a, b.",
which these instruction-following models obey better than bare "no X" tokens inside the scene.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.config_sections import StyleSection
from bot.domain import Options
from bot.errors import InvalidOption

__all__ = ["BUILTIN_STYLES", "Style", "Styles", "compose"]

#: Longest negative list kept (characters), so a prompt cannot be padded without bound.
NEGATIVE_MAX = 300


@dataclass(frozen=True, slots=True)
class Style:
    """A named prompt template; ``{prompt}`` is the user's description."""

    name: str
    template: str
    label: str | None = None  # the operator's display name; else the catalogs' style.NAME

    def apply(self, prompt: str) -> str:
        """The user's words inside this style's template."""
        return self.template.replace("{prompt}", prompt)


BUILTIN_STYLES: dict[str, Style] = {s.name: s for s in (
    Style("figurine", "A photorealistic 1/7 scale collectible figurine of {prompt}, on a round clear "
                      "acrylic base on a computer desk, its boxed packaging beside it, soft studio light."),
    Style("sticker", "A sheet of die-cut vinyl stickers of {prompt}: bold clean outlines, flat vivid "
                     "colors, a white border around each sticker, on a plain light background."),
    Style("avatar", "A centered head-and-shoulders avatar portrait of {prompt}, expressive face, "
                    "simple soft gradient background, crisp and readable at small sizes."),
    Style("poster", "A striking poster of {prompt}: strong composition, dramatic lighting, bold "
                    "graphic shapes, room for a title at the top."),
    Style("product", "A professional studio product photograph of {prompt} on a seamless backdrop, "
                     "softbox lighting, gentle reflections, sharp focus, commercial catalog quality."),
    Style("pixel", "Pixel art of {prompt}: a limited 32-color palette, crisp square pixels, no "
                   "anti-aliasing, 16-bit video game look."),
    Style("watercolor", "A watercolor painting of {prompt}: soft washes, visible paper texture, "
                        "loose brushwork, gentle color bleeds, white paper showing through."),
)}


class Styles:
    """The presets in force: built-ins, then the operator's ``[styles.NAME]`` on top."""

    def __init__(self, configured: Mapping[str, Style] | None = None) -> None:
        self.presets: dict[str, Style] = {**BUILTIN_STYLES, **(configured or {})}

    @classmethod
    def of(cls, sections: Mapping[str, StyleSection]) -> Styles:
        """The presets with the operator's ``[styles.NAME]`` tables."""
        return cls({name.lower(): Style(name.lower(), section.template, section.label)
                    for name, section in sections.items()})

    def label(self, t: Callable[..., str], locale: str, name: str) -> str:
        """A preset's name as shown: the operator's label, else ``style.NAME``, else NAME."""
        style = self.presets.get(name)
        if style is not None and style.label:
            return style.label
        shown = t(locale, f"style.{name}")
        return name if shown == f"style.{name}" else shown

    def names(self) -> list[str]:
        """Preset names, in a stable order."""
        return sorted(self.presets)

    def text(self, prompt: str, opts: Options, group_style: str | None = None) -> str:
        """The model's text for a request: ``--style`` (else a group's preset), a group's free
        style note, and what to leave out (``--no``)."""
        style = self.get(opts.style) if opts.style else None
        note = group_style
        if note and note.strip().lower() in self.presets:
            style, note = style or self.get(note), None
        return compose(prompt, style, opts.negative, note)

    def get(self, name: str, where: str = "--style") -> Style:
        """A preset by name (case-insensitive); InvalidOption naming ``where`` otherwise."""
        found = self.presets.get(name.strip().lower())
        if found is None:
            raise InvalidOption(where, name, self.names())
        return found


def compose(prompt: str, style: Style | None = None, negative: tuple[str, ...] = (),
            extra_style: str | None = None) -> str:
    """The text the model gets: the styled description, a group's style note, what to leave out."""
    text = style.apply(prompt) if style is not None else prompt
    if extra_style:
        text += f"\n\nStyle: {extra_style}"
    words = [w for w in (" ".join(n.split()) for n in negative) if w]
    if words:
        listed = ", ".join(words)[:NEGATIVE_MAX]
        text += f"\n\nLeave out entirely: {listed}."
    return text
