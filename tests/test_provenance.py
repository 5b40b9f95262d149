"""Issue 19.4: originals keep their bytes; re-encoded previews carry provenance or the AI marker."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import replace

from PIL import Image, PngImagePlugin

from bot import provenance
from bot.config import Settings
from bot.domain import Budget, ImageData
from bot.images import fit, thumbnail

Factory = Callable[..., Settings]
SMALL = Budget(max_bytes=40_000, formats=("image/jpeg",))
OURS = b"http://ns.adobe.com/xap/1.0/\x00"
MODEL_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
             b'22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/'
             b'elements/1.1/" dc:creator="Example Model"/></rdf:RDF></x:xmpmeta>')
JUMBF = struct.pack(">I4s", 40, b"jumb") + b"c2pa-manifest-store-bytes" + b"\x00" * 7


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def noisy_png(xmp: bytes | None = None, c2pa: bool = False, side: int = 600) -> bytes:
    """A PNG that must be re-encoded to fit SMALL, with optional XMP and a C2PA chunk."""
    image = Image.effect_noise((side, side), 80).convert("RGB")
    info = PngImagePlugin.PngInfo()
    if xmp is not None:
        info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=info)
    data = buf.getvalue()
    if c2pa:  # caBX goes before IEND, as the C2PA spec places it
        data = data[:-12] + _chunk(b"caBX", JUMBF) + data[-12:]
    return data


def segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of a JPEG's header segments."""
    return provenance._jpeg_segments(jpeg)


def xmp_of(jpeg: bytes) -> bytes:
    found = [p[len(OURS):] for m, p in segments(jpeg) if m == 0xE1 and p.startswith(OURS)]
    assert len(found) == 1, found
    return found[0]


async def test_a_preview_without_provenance_gets_the_ai_marker() -> None:
    original = ImageData(noisy_png(), "image/png")
    out = await fit(original, SMALL)
    assert out is not original and out.mime == "image/jpeg" and out.size_bytes <= SMALL.max_bytes
    assert provenance.AI_SOURCE_TYPE.encode() in xmp_of(out.data)
    with Image.open(io.BytesIO(out.data)) as im:  # still a valid JPEG that decoders read
        im.load()
        assert "trainedAlgorithmicMedia" in im.info.get("xmp", b"").decode()


async def test_the_models_xmp_and_c2pa_are_carried_and_marked() -> None:
    original = ImageData(noisy_png(MODEL_XMP, c2pa=True), "image/png")
    out = await fit(original, SMALL)
    xmp = xmp_of(out.data)
    assert b'dc:creator="Example Model"' in xmp and provenance.AI_SOURCE_TYPE.encode() in xmp
    app11 = [p for m, p in segments(out.data) if m == 0xEB]
    assert len(app11) == 1 and app11[0].startswith(b"JP") and app11[0].endswith(JUMBF)


async def test_a_jpeg_originals_iptc_and_xmp_are_copied_as_they_are() -> None:
    stated = MODEL_XMP.replace(b'dc:creator="Example Model"', b'Iptc4xmpExt:DigitalSourceType='
                               b'"http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic"')
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x08\x1c\x02\x05\x00\x03Fox"
    buf = io.BytesIO()
    Image.effect_noise((600, 600), 80).convert("RGB").save(buf, "JPEG", quality=100)
    plain = buf.getvalue()
    data = plain[:2] + struct.pack(">BBH", 0xFF, 0xE1, len(OURS + stated) + 2) + OURS + stated
    data += struct.pack(">BBH", 0xFF, 0xED, len(iptc) + 2) + iptc + plain[2:]
    out = await fit(ImageData(data, "image/jpeg"), SMALL)
    assert xmp_of(out.data) == stated  # a source type already stated is not overwritten
    assert (0xED, iptc) in segments(out.data)


async def test_an_original_that_fits_is_sent_byte_for_byte() -> None:
    data = noisy_png(MODEL_XMP, c2pa=True, side=64)
    original = ImageData(data, "image/png")
    assert await fit(original, Budget(max_bytes=10_000_000)) is original


async def test_thumbnails_are_marked_too() -> None:
    thumb = await thumbnail(ImageData(noisy_png(), "image/png"), side=64)
    assert provenance.AI_SOURCE_TYPE.encode() in xmp_of(thumb.data)


async def test_telegram_photo_is_marked_and_the_document_is_the_models_bytes(
        settings_factory: Factory) -> None:
    from tests.fake_telegram import running_bot  # the adapter's fake, only for this transcript
    from tests.test_telegram_limits import FixedProvider

    def wide() -> bytes:  # over Telegram's photo ratio: the photo is a re-encode, the file is not
        image = Image.linear_gradient("L").resize((8000, 300)).convert("RGB")
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", MODEL_XMP.decode())
        buf = io.BytesIO()
        image.save(buf, "PNG", pnginfo=info)
        return buf.getvalue()

    async with running_bot(settings_factory, providers={"demo": FixedProvider("1K", wide)}) as bot:
        bot.fake.user_sends("/imagine a panorama")
        photo = await bot.fake.wait_for("sendPhoto")
        xmp = xmp_of(photo.files["photo"])
        assert b"Example Model" in xmp and provenance.AI_SOURCE_TYPE.encode() in xmp
        document = await bot.fake.wait_for("sendDocument")
        assert document.files["document"] == wide()


async def test_captions_say_ai_generated_unless_the_operator_turns_it_off(
        settings_factory: Factory) -> None:
    from tests.outcomes import jobs
    from tests.test_service import ALICE, FakeProvider, ask, running

    for config, locale, expected in (({}, "en", "AI-generated image"),
                                     ({}, "zh-Hans", "AI 生成的图像"),
                                     ({"ai_label": False}, "en", None)):
        settings = settings_factory(bot=config)
        async with running(settings, providers={"demo": FakeProvider()}) as core:
            actor = replace(ALICE, locale=locale)
            reply = await jobs(core).imagine(ask("a fox", actor=actor))
            assert reply.ok, reply.text
            lines = reply.text.splitlines()
            if expected is None:
                assert not any("AI" in line for line in lines[1:]), reply.text
            else:
                assert lines[-1] == expected, reply.text
