"""The XMP marking: written into png/jpeg/webp without touching a pixel, found where other readers
(Pillow here; exiftool and platforms the same way) look for it, and read back exactly."""
from __future__ import annotations

import re
import struct
import tomllib
from pathlib import Path

import imagegen as g
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import img2img
from img2img.core import xmp
from img2img.operations import BY_NAME, EDITED, GENERATED

# What each output format can store, as Pillow writes it (and webp lossy or lossless).
FORMAT_MODES = {"png": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"), "jpeg": ("L", "RGB", "CMYK"),
                "webp": ("RGB", "RGBA")}
# Characters XML 1.0 can carry: ids are written as they are and must come back the same.
XML_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff",
                                 min_codepoint=0x09).filter(lambda c: c not in "\x0b\x0c"
                                                            and not 0x0e <= ord(c) <= 0x1f), max_size=60)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    return g.encode(image, fmt.upper(), **options)


def pixels(data: bytes) -> tuple:
    image = g.decode(data)
    frames = []
    for i in range(getattr(image, "n_frames", 1)):
        image.seek(i)
        frames.append(image.tobytes())
    return image.mode, image.size, tuple(frames)


def marking(source_type=GENERATED, model_id="us.stability.sd3-5-large-v1:0", job_id="job-1") -> xmp.Marking:
    return xmp.Marking(source_type, model_id, job_id)


def expected(m: xmp.Marking) -> dict:
    return {"digital_source_type": m.digital_source_type, "source_type": m.source_type, "model_id": m.model_id,
            "job_id": m.job_id, "creator_tool": m.creator_tool}


@st.composite
def outputs(draw):
    fmt = draw(st.sampled_from(sorted(FORMAT_MODES)))
    mode = draw(st.sampled_from(FORMAT_MODES[fmt]))
    width = draw(st.integers(1, 600))
    height = draw(st.integers(1, max(1, 120_000 // width)))
    image = g.in_mode(g.textured((width, height), seed=draw(st.integers(0, 9))), mode)
    if mode in ("LA", "RGBA"):  # a real alpha channel, so webp writes ALPH or VP8L's alpha bit
        alpha = Image.linear_gradient("L").resize((width, height))
        image.putalpha(alpha)
    options = {}
    if fmt == "webp":
        options = {"lossless": draw(st.booleans()), "quality": 80}
    if fmt in ("jpeg", "webp", "png") and draw(st.booleans()):
        options["exif"] = g.exif_bytes(draw(st.integers(1, 8)))
    return fmt, mode, encode(image, fmt, **options)


@given(outputs(), XML_TEXT, XML_TEXT, st.sampled_from([GENERATED, EDITED]))
def test_marking_keeps_every_pixel_and_reads_back_what_was_written(output, model_id, job_id, source_type):
    fmt, mode, data = output
    m = marking(source_type, model_id, job_id)
    marked = xmp.mark(data, fmt, m)
    assert pixels(marked) == pixels(data)
    assert xmp.read_xmp(marked) == expected(m)
    assert g.decode(marked).info.get("xmp") == xmp.build_packet(m)  # Pillow finds it where readers look
    assert dict(g.decode(marked).getexif()) == dict(g.decode(data).getexif())


@given(outputs())
def test_marking_again_replaces_the_packet(output):
    fmt, _, data = output
    twice = xmp.mark(xmp.mark(data, fmt, marking(job_id="first")), fmt, marking(job_id="second"))
    assert twice.count(b"<x:xmpmeta") == 1
    assert xmp.read_xmp(twice)["job_id"] == "second"
    assert pixels(twice) == pixels(data)


@pytest.mark.parametrize("value", ['a<b>&c"d\'e', "line\nbreak\ttab\rcr", "</rdf:Description>", "]]>?>",
                                   "&amp; already escaped", "ünïcödé ✓ 𝄞"])
def test_values_with_markup_come_back_unchanged(value):
    m = marking(model_id=value, job_id=value)
    read = xmp.read_xmp(xmp.mark(encode(g.solid(), "png"), "png", m))
    assert (read["model_id"], read["job_id"]) == (value, value)


def test_characters_xml_cannot_carry_become_replacement_characters():
    read = xmp.read_xmp(xmp.mark(encode(g.solid(), "jpeg"), "jpeg", marking(job_id="a\x00b\x1bc\ufffe")))
    assert read["job_id"] == "a\ufffdb\ufffdc\ufffd"


@pytest.mark.parametrize("operation, iptc", [("image-to-image", "trainedAlgorithmicMedia"),
                                             ("inpaint", "compositeWithTrainedAlgorithmicMedia"),
                                             ("style-guide", "trainedAlgorithmicMedia")])
def test_the_digital_source_type_is_the_full_iptc_uri(operation, iptc):
    source_type = BY_NAME[operation].source_type if operation in BY_NAME else GENERATED
    read = xmp.read_xmp(xmp.mark(encode(g.solid(), "webp"), "webp", marking(source_type)))
    assert read["digital_source_type"] == f"http://cv.iptc.org/newscodes/digitalsourcetype/{iptc}"


def test_png_packet_is_an_uncompressed_itxt_before_the_first_idat():
    marked = xmp.mark(encode(g.textured((64, 64)), "png"), "png", marking())
    kinds = re.findall(rb"....(IHDR|iTXt|IDAT|IEND)", marked)
    assert kinds.index(b"iTXt") < kinds.index(b"IDAT")
    assert b"iTXtXML:com.adobe.xmp\x00\x00\x00\x00\x00<?xpacket" in marked


def test_jpeg_packet_follows_jfif_and_exif():
    data = encode(g.textured((64, 64)), "jpeg", exif=g.exif_bytes(6))
    marked = xmp.mark(data, "jpeg", marking())
    segments = [(hex(m), marked[s + 4:s + 10]) for m, s, _ in xmp._jpeg_segments(marked)][:3]
    assert segments[:3] == [("0xe0", b"JFIF\x00\x01"), ("0xe1", b"Exif\x00\x00"), ("0xe1", b"http:/")]
    assert g.decode(marked).getexif()[0x0112] == 6


@pytest.mark.parametrize("size, lossless, alpha", [((1, 1), False, False), ((16383, 3), True, False),
                                                   ((300, 200), True, True), ((300, 200), False, True),
                                                   ((5000, 7), False, False)])
def test_webp_becomes_extended_with_its_canvas_and_alpha(size, lossless, alpha):
    image = g.solid(size, (10, 200, 30, 128) if alpha else (10, 200, 30), "RGBA" if alpha else "RGB")
    data = encode(image, "webp", lossless=lossless)
    marked = xmp.mark(data, "webp", marking())
    assert marked[12:16] == b"VP8X"
    flags = marked[20]
    width = int.from_bytes(marked[24:27], "little") + 1
    height = int.from_bytes(marked[27:30], "little") + 1
    assert (width, height) == size
    assert bool(flags & 0x10) == alpha and flags & 0x04
    assert struct.unpack("<I", marked[4:8])[0] == len(marked) - 8
    assert pixels(marked) == pixels(data)


def test_animated_webp_keeps_its_frames():
    data = g.animated("WEBP")
    marked = xmp.mark(data, "webp", marking())
    assert pixels(marked) == pixels(data) and len(pixels(marked)[2]) == 3
    assert xmp.read_xmp(marked)["job_id"] == "job-1"


def test_a_file_without_xmp_reads_as_empty():
    assert xmp.read_xmp(encode(g.solid(), "png")) == {}
    assert xmp.read_xmp(b"GIF89a...") == {}


def test_packets_written_by_other_tools_are_read_too():
    packet = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
              b"<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/"
              b"trainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType></rdf:Description></rdf:RDF></x:xmpmeta>")
    read = xmp.read_xmp(xmp.embed(encode(g.solid(), "jpeg"), "jpeg", packet))
    assert read["source_type"] == "trainedAlgorithmicMedia"


def test_entity_declarations_are_refused():
    packet = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>'
    with pytest.raises(ValueError, match="DOCTYPE"):
        xmp.read_xmp(xmp.embed(encode(g.solid(), "png"), "png", packet))


@pytest.mark.parametrize("fmt, data", [("png", b"\x89PNG\r\n\x1a\n\x00\x00"), ("jpeg", b"\xff\xd8\xff\xe0\x00"),
                                       ("webp", b"RIFF\x10\x00\x00\x00WEBPVP8 \xff\x00"), ("gif", b"GIF89a")])
def test_truncated_or_unsupported_input_is_a_value_error(fmt, data):
    with pytest.raises(ValueError):
        xmp.mark(data, fmt, marking())


def test_the_version_outputs_claim_is_the_projects():
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert (img2img.TOOL_NAME, img2img.__version__) == (project["name"], project["version"])
    assert marking().creator_tool == f"{project['name']} {project['version']}"


def test_the_packet_is_small():
    assert len(xmp.build_packet(marking(job_id="x" * 36))) < 800
