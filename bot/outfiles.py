"""Where ``generate --out`` writes: a named file (its suffix picks the format), or a directory
(or the current one) where each image gets a name made from the prompt; never over an existing
file unless ``--force``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bot.domain import ImageData
from bot.errors import BotError

#: Suffixes ``--out`` may name, and the format each one writes.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_EXTENSION = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
SLUG_CHARS = 48


class OutputRefused(BotError):
    """``--out`` names something ``generate`` will not write (told before the model is called)."""

    key = "error.invalid_option"
    exit_code = 2

    def __init__(self, text: str) -> None:
        super().__init__(text)


@dataclass(frozen=True, slots=True)
class Target:
    """What ``--out`` asked for: a file by name, or a folder for names made from the prompt."""

    folder: Path
    file: Path | None = None
    force: bool = False

    @property
    def format(self) -> str | None:
        """The format the named file's suffix asks for (None: the image's own)."""
        return FORMATS.get(self.file.suffix.lower()) if self.file else None


def plan(out: str | None, *, force: bool = False) -> Target:
    """Check ``--out`` before any money is spent: suffix known, no file in the way."""
    if out is None:
        return Target(Path("."), force=force)
    path = Path(out)
    if out.endswith(("/", "\\")) or path.is_dir():
        return Target(path, force=force)
    suffix = path.suffix.lower()
    if suffix and suffix not in FORMATS:
        raise OutputRefused(f"--out {out}: {suffix} is not an image format this can write; "
                            "end the name in .png, .jpg or .webp (or name a directory)")
    if suffix and path.exists() and not force:
        raise OutputRefused(f"--out {out}: the file exists; pass --force to overwrite it, "
                            "or name another file or a directory")
    return Target(path.parent, path, force)


def slug(prompt: str) -> str:
    """A file-name stem from the prompt's first words (letters of any script kept)."""
    words = re.sub(r"[^\w]+", "-", prompt.lower(), flags=re.UNICODE).strip("-_")
    return ("imagine-" + words[:SLUG_CHARS].rstrip("-_")) if words else "imagine"


def paths(target: Target, prompt: str, images: tuple[ImageData, ...]) -> list[Path]:
    """One path per image: the named file (numbered when there are several), else free names."""
    count = len(images)
    fmt = target.format
    exts = [_EXTENSION[fmt] if fmt else im.extension for im in images]
    if target.file is not None:
        base = target.file
        if count == 1:
            chosen = [base if base.suffix else base.with_suffix("." + exts[0])]
        else:
            chosen = [base.with_name(f"{base.stem}-{i + 1}.{ext}") for i, ext in enumerate(exts)]
        taken = [p for p in chosen if p.exists()]
        if taken and not target.force:
            raise OutputRefused(f"{taken[0]} exists; pass --force to overwrite it, or name "
                                "another --out")
        return chosen
    stem = slug(prompt)
    for attempt in range(1, 10_000):  # the first free name: made-up names never overwrite
        tail = "" if attempt == 1 else f"-{attempt}"
        names = ([f"{stem}{tail}.{exts[0]}"] if count == 1 else
                 [f"{stem}{tail}-{i + 1}.{ext}" for i, ext in enumerate(exts)])
        chosen = [target.folder / n for n in names]
        if not any(p.exists() for p in chosen):
            return chosen
    raise OutputRefused(f"no free file name for {stem} in {target.folder}; name one with --out")


def encode(image: ImageData, fmt: str | None) -> bytes:
    """The image's bytes in ``fmt`` (re-encoded by Pillow only when it differs)."""
    if fmt is None or _EXTENSION[fmt] == image.extension:
        return image.data
    with Image.open(io.BytesIO(image.data)) as opened:
        img: Image.Image = opened
        if fmt == "JPEG" and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")  # JPEG has no alpha channel
        out = io.BytesIO()
        img.save(out, fmt, quality=92)
        return out.getvalue()


def write(target: Target, prompt: str, images: tuple[ImageData, ...]) -> list[Path]:
    """Write every image where ``paths`` says (blocking: run it in a thread)."""
    chosen = paths(target, prompt, images)
    for path, image in zip(chosen, images, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(image, target.format))
    return chosen
