"""The IPTC "made by AI" marking: an XMP packet, written into an encoded PNG, JPEG or WebP without
touching its pixels, and read back.

Only the container is rewritten (a chunk or segment inserted, an older XMP packet dropped), so the
marking costs microseconds and a few hundred bytes, never a re-encode. Where each format keeps XMP:
PNG an `iTXt` chunk with keyword `XML:com.adobe.xmp` before the first IDAT; JPEG an APP1 segment
(`http://ns.adobe.com/xap/1.0/`) after SOI, JFIF APP0 and an Exif APP1; WebP an `XMP ` chunk in the
extended format (a simple VP8/VP8L file becomes VP8X, with its canvas size and alpha flag).

Write the XMP before signing a C2PA manifest: the manifest's hash then covers the marking too.
"""
from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from functools import cache

from .. import TOOL_NAME, __version__

DIGITAL_SOURCE_TYPE_BASE = "http://cv.iptc.org/newscodes/digitalsourcetype/"
NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "img2img": "urn:bedrock-img2img:xmp:1.0/",  # our own: the job id has no standard home
}
# What each key of a Marking is written as (IPTC 2025.1 added AISystemUsed for the generator).
PROPERTIES = {
    "digital_source_type": ("Iptc4xmpExt", "DigitalSourceType"),
    "model_id": ("Iptc4xmpExt", "AISystemUsed"),
    "creator_tool": ("xmp", "CreatorTool"),
    "job_id": ("img2img", "JobId"),
}
PNG_KEYWORD = b"XML:com.adobe.xmp"
JPEG_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_MAX_PAYLOAD = 65_533 - len(JPEG_XMP_ID)
_WEBP_XMP_FLAG, _WEBP_ALPHA_FLAG = 0x04, 0x10
# XML 1.0 cannot carry these at all (not even as character references): they become U+FFFD.
_NOT_XML = "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
            "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}  # whitespace too: attribute values are normalized
_ESCAPE = re.compile("[&<>\"'\t\n\r]")


@dataclass(frozen=True)
class Marking:
    """What an output says about itself. `source_type` is an IPTC code (operations.GENERATED/EDITED)."""

    source_type: str
    model_id: str
    job_id: str
    creator_tool: str = f"{TOOL_NAME} {__version__}"

    @property
    def digital_source_type(self) -> str:
        return DIGITAL_SOURCE_TYPE_BASE + self.source_type


@cache
def _not_xml() -> re.Pattern:
    """Compiled on the first marking, not at import: the class spans all of Unicode and takes ~4 ms
    to compile, which every cold start would pay (docs/performance.md §2)."""
    return re.compile(_NOT_XML)


def _escape(value: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group()], _not_xml().sub("\ufffd", value))


def build_packet(marking: Marking) -> bytes:
    """The XMP packet (UTF-8), every value escaped: ids come from users' metadata and model names."""
    namespaces = "".join(f'\n    xmlns:{p}="{uri}"' for p, uri in NS.items() if p not in ("x", "rdf"))
    values = "".join(f'\n   {p}:{name}="{_escape(getattr(marking, key))}"' for key, (p, name) in PROPERTIES.items())
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            f'<x:xmpmeta xmlns:x="{NS["x"]}">\n <rdf:RDF xmlns:rdf="{NS["rdf"]}">\n'
            f'  <rdf:Description rdf:about=""{namespaces}{values}/>\n </rdf:RDF>\n</x:xmpmeta>\n'
            f'<?xpacket end="r"?>').encode()


def embed(data: bytes, fmt: str, packet: bytes) -> bytes:
    """`data` (an encoded `fmt`: png, jpeg or webp) with `packet` as its only XMP; pixels untouched."""
    writer = {"png": _png_embed, "jpeg": _jpeg_embed, "webp": _webp_embed}.get(fmt)
    if writer is None:
        raise ValueError(f"no XMP writer for {fmt!r}")
    return writer(data, packet)


def mark(data: bytes, fmt: str, marking: Marking) -> bytes:
    """embed(data, fmt, build_packet(marking)): the one call the pipeline makes."""
    return embed(data, fmt, build_packet(marking))


# ---- reading ----------------------------------------------------------------------------------------
def find_packet(data: bytes) -> bytes | None:
    """The XMP packet of a PNG, JPEG or WebP file, or None (another format, or no XMP)."""
    if data.startswith(_PNG_SIGNATURE):
        for ctype, body, _, _ in _png_chunks(data):
            if ctype == b"iTXt" and body.startswith(PNG_KEYWORD + b"\x00"):
                return _itxt_text(body)
    elif data.startswith(b"\xff\xd8"):
        for marker, start, end in _jpeg_segments(data):
            if marker == 0xE1 and data[start + 4:end].startswith(JPEG_XMP_ID):
                return data[start + 4 + len(JPEG_XMP_ID):end]
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        for fourcc, body, _ in _riff_chunks(data):
            if fourcc == b"XMP ":
                return body
    return None


def read_xmp(data: bytes) -> dict[str, str]:
    """The marking of an encoded image as a dict (keys of PROPERTIES, plus `source_type`, the IPTC code
    without its URI base); {} when there is no XMP. Reads attribute and element forms (exiftool's too)."""
    packet = find_packet(data)
    if packet is None:
        return {}
    return parse_packet(packet)


def parse_packet(packet: bytes) -> dict[str, str]:
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        raise ValueError("an XMP packet may not declare a DOCTYPE or entities")
    root = ET.fromstring(packet.decode("utf-8", "replace").lstrip("\ufeff"))
    wanted = {f"{{{NS[p]}}}{name}": key for key, (p, name) in PROPERTIES.items()}
    out: dict[str, str] = {}
    for description in root.iter(f"{{{NS['rdf']}}}Description"):
        for qname, value in description.attrib.items():
            if qname in wanted:
                out[wanted[qname]] = value
        for child in description:
            if child.tag in wanted and len(child) == 0:
                out[wanted[child.tag]] = child.text or ""
    dst = out.get("digital_source_type", "")
    if dst.startswith(DIGITAL_SOURCE_TYPE_BASE):
        out["source_type"] = dst[len(DIGITAL_SOURCE_TYPE_BASE):]
    return out


# ---- PNG --------------------------------------------------------------------------------------------
def _png_chunks(data: bytes):
    """(type, body, start, end) of each chunk; raises ValueError on a truncated file."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    pos = len(_PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG chunk")
        yield ctype, data[pos + 8:pos + 8 + length], pos, end
        pos = end
        if ctype == b"IEND":
            return


def _itxt_text(body: bytes) -> bytes:
    keyword_end = body.index(b"\x00")
    compressed = body[keyword_end + 1]
    rest = body[keyword_end + 3:]
    _language, _, rest = rest.partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    return zlib.decompress(text) if compressed else text


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png_embed(data: bytes, packet: bytes) -> bytes:
    chunk = _png_chunk(b"iTXt", PNG_KEYWORD + b"\x00\x00\x00\x00\x00" + packet)
    out = [_PNG_SIGNATURE]
    inserted = False
    for ctype, body, start, end in _png_chunks(data):
        if ctype == b"iTXt" and body.startswith(PNG_KEYWORD + b"\x00"):
            continue  # an older packet: ours is the one
        if ctype == b"IDAT" and not inserted:
            out.append(chunk)
            inserted = True
        out.append(data[start:end])
    if not inserted:
        raise ValueError("a PNG without IDAT")
    return b"".join(out)


# ---- JPEG -------------------------------------------------------------------------------------------
def _jpeg_segments(data: bytes):
    """(marker, start, end) of each header segment up to (not including) SOS."""
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError("JPEG segment does not start with 0xFF")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            raise ValueError("truncated JPEG")
        marker = data[pos]
        start = pos - 1
        if marker == 0xDA or marker == 0xD9:
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 1
            continue
        if pos + 3 > len(data):
            raise ValueError("truncated JPEG segment")
        (length,) = struct.unpack(">H", data[pos + 1:pos + 3])
        end = pos + 1 + length
        if length < 2 or end > len(data):
            raise ValueError("truncated JPEG segment")
        yield marker, start, end
        pos = end


def _jpeg_embed(data: bytes, packet: bytes) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    if len(packet) > _JPEG_MAX_PAYLOAD:
        raise ValueError(f"an XMP packet over {_JPEG_MAX_PAYLOAD} bytes does not fit one APP1 segment")
    payload = JPEG_XMP_ID + packet
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    head: list[bytes] = [b"\xff\xd8"]
    after = 2  # where the untouched rest begins
    insert_at = 1
    for marker, start, end in _jpeg_segments(data):
        body = data[start:end]
        after = end
        if marker == 0xE1 and body[4:].startswith(JPEG_XMP_ID):
            continue
        head.append(body)
        if len(head) == insert_at + 1 and (marker == 0xE0 or (marker == 0xE1 and body[4:10] == b"Exif\x00\x00")):
            insert_at = len(head)  # keep JFIF and Exif first, as their specs ask
    head.insert(insert_at, segment)
    return b"".join(head) + data[after:]


# ---- WebP -------------------------------------------------------------------------------------------
def _riff_chunks(data: bytes):
    """(fourcc, body, raw chunk incl. padding) of each chunk of a WebP file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP")
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    pos = 12
    while pos + 8 <= end:
        fourcc, size = struct.unpack("<4sI", data[pos:pos + 8])
        stop = pos + 8 + size
        if stop > end:
            raise ValueError("truncated WebP chunk")
        yield fourcc, data[pos + 8:stop], data[pos:stop + (size & 1)]
        pos = stop + (size & 1)


def _riff_chunk(fourcc: bytes, body: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _canvas(fourcc: bytes, body: bytes) -> tuple[int, int, bool]:
    """Width, height and alpha of a simple file's one image (the VP8X header needs them)."""
    if fourcc == b"VP8 ":
        if body[3:6] != b"\x9d\x01\x2a":
            raise ValueError("VP8 chunk without its start code")
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if fourcc == b"VP8L":
        if body[:1] != b"\x2f":
            raise ValueError("VP8L chunk without its signature")
        (bits,) = struct.unpack("<I", body[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise ValueError(f"unexpected WebP chunk {fourcc!r}")


def _webp_embed(data: bytes, packet: bytes) -> bytes:
    chunks = list(_riff_chunks(data))
    if not chunks:
        raise ValueError("a WebP without chunks")
    kept = [raw for fourcc, _, raw in chunks if fourcc != b"XMP "]
    first, body, _ = chunks[0]
    if first == b"VP8X":
        flags = body[0] | _WEBP_XMP_FLAG
        kept[0] = _riff_chunk(b"VP8X", bytes([flags]) + body[1:])
    else:
        width, height, alpha = _canvas(first, body)
        flags = _WEBP_XMP_FLAG | (_WEBP_ALPHA_FLAG if alpha else 0)
        vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        kept.insert(0, _riff_chunk(b"VP8X", vp8x))
    payload = b"WEBP" + b"".join(kept) + _riff_chunk(b"XMP ", packet)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload
