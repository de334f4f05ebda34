"""The pre-flight check of image files: cheap, before any training.

Each file's first bytes say its format (JPEG, PNG, GIF or BMP by content,
whatever the extension says); its structure is walked without decoding
pixels (JPEG: every marker, also those inside its pixel data, to the
end-of-image marker; PNG: every chunk's CRC and the start of its pixel
data; GIF / BMP: Pillow), in a thread pool. A header
that claims more pixels than `MAX_PIXELS` (a decompression bomb, or a
damaged header) fails too: decoding it would exhaust memory mid-run.

Training needs the whole walk: a file that fails to decode mid-epoch
would stop the run. Predict does not (`quick=True`): its pipeline drops
a file that fails to decode and names it in its own row, so only the
headers are read there (format, size, decoder code), and the full walk
runs on the few files the decoder dropped, to say why.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import numpy as np

from dlcli.data import scanning

# Decoder branch per file, chosen by the pre-flight check from the content
# and the size: JPEG decoded at 1/1, 1/2, 1/4 or 1/8 scale, PNG, or
# GIF / BMP.
JPEG_SCALES = (1, 2, 4, 8)
JPEG, PNG, OTHER = 0, len(JPEG_SCALES), len(JPEG_SCALES) + 1
_FORMAT_CODES = {"jpeg": JPEG, "png": PNG, "gif": OTHER, "bmp": OTHER}
# Pillow's decompression-bomb limit doubled (~179 megapixels, 0.5 GB RGB).
MAX_PIXELS = 2 * 89_478_485


def sniff_format(head: bytes) -> Optional[str]:
    """The image format from a file's first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 6:
        return "bmp"
    return None


class _Bad(Exception):
    """A file that is not a decodable image; the message says why."""


# Inside entropy-coded (pixel) data a 0xFF byte is followed by 0x00
# (stuffing), a restart marker (0xD0..0xD7) or more 0xFF fill bytes; any
# other byte after it is a marker ending the scan.
_MARKER_IN_SCAN = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")
# Markers a JPEG may hold after its frame header: tables (DHT, DAC, DQT,
# DRI, DNL), application data and comments, another scan (SOS); the end
# (EOI) and the markers without a length are handled before.
_AFTER_FRAME = {0xC4, 0xCC, 0xDA, 0xDB, 0xDD, 0xDC, 0xFE, *range(0xE0, 0xF0)}
# Frame types libjpeg decodes: baseline, extended, progressive (Huffman or
# arithmetic coding).
_DECODABLE_FRAMES = {0xC0, 0xC1, 0xC2, 0xC9, 0xCA}


def _jpeg_walk(data: bytes) -> tuple[int, int]:
    """(height, width) of a JPEG after walking its whole structure: every
    marker segment, and every scan's pixel data to the marker after it.

    No pixels are decoded, but what libjpeg refuses mid-decode is found:
    a marker it does not know (or a second frame header) inside garbage
    pixel data, Huffman tables or scan headers it rejects, a segment
    running past the end, no end-of-image marker. Garbage that holds no
    such marker decodes (as noise) everywhere.
    """
    pos, end, size, frame = 2, len(data), None, 0
    tables: set[int] = set()  # Huffman tables defined so far: class << 4 | id
    while True:
        if pos >= end:
            raise _Bad("truncated JPEG (no end-of-image marker)" if size else "truncated JPEG (no frame header)")
        if data[pos] != 0xFF:
            raise _Bad("corrupt JPEG (no marker where one should be)")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            continue
        code = data[pos]
        pos += 1
        if code == 0xD9:
            if size is None:
                raise _Bad("corrupt JPEG (no frame header)")
            return size
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
            continue
        if size is not None and code not in _AFTER_FRAME:  # what libjpeg stops at
            what = "a second frame header" if 0xC0 <= code <= 0xCF else "unknown marker"
            raise _Bad(f"corrupt JPEG (its pixel data is garbage: {what} 0x{code:02X})")
        if pos + 2 > end:
            raise _Bad("truncated JPEG (no end-of-image marker)" if size else "truncated JPEG (no frame header)")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            raise _Bad("truncated JPEG (a segment runs past the end of the file)" if length >= 2
                       else "corrupt JPEG (bad segment length)")
        segment = data[pos + 2 : pos + length]
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) hold the size.
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            size, frame = _jpeg_frame(segment, code)
        elif code == 0xC4:
            tables |= _jpeg_tables(segment)
        elif code == 0xDA:
            if size is None:
                raise _Bad("corrupt JPEG (image data before its frame header)")
            _jpeg_scan(segment, frame, tables)
        pos += length
        if code == 0xDA:  # the scan's pixel data runs to the next marker
            found = _MARKER_IN_SCAN.search(data, pos)
            if found is None:
                raise _Bad("truncated JPEG (no end-of-image marker)")
            pos = found.start()


def _jpeg_frame(segment: bytes, code: int) -> tuple[tuple[int, int], int]:
    """((height, width), frame type) from a frame header (SOFn)."""
    if code not in _DECODABLE_FRAMES:
        raise _Bad(f"unsupported JPEG (lossless or hierarchical coding, frame type 0x{code:02X})")
    if len(segment) < 5:
        raise _Bad("truncated JPEG (frame header cut short)")
    return (int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")), code


def _jpeg_tables(segment: bytes) -> set[int]:
    """The Huffman tables (class << 4 | id) a DHT segment defines, checked
    as libjpeg checks them."""
    found, i = set(), 0
    while i < len(segment):
        slot, counts = segment[i], segment[i + 1 : i + 17]
        total = sum(counts)
        if slot >> 4 > 1 or slot & 0x0F > 3 or len(counts) < 16 or total > 256 or i + 17 + total > len(segment):
            raise _Bad("corrupt JPEG (its pixel data is garbage: a bad Huffman table)")
        found.add(slot)
        i += 17 + total
    return found


def _jpeg_scan(segment: bytes, frame: int, tables: set[int]) -> None:
    """A scan header (SOS) as libjpeg accepts it: its components, the
    progressive parameters, the Huffman tables it uses defined."""
    count = segment[0] if segment else 0
    if not 1 <= count <= 4 or len(segment) != 4 + 2 * count:
        raise _Bad("corrupt JPEG (its pixel data is garbage: a bad scan header)")
    ss, se, ah, al = segment[-3], segment[-2], segment[-1] >> 4, segment[-1] & 0x0F
    progressive = frame in (0xC2, 0xCA)
    if progressive and (se > 63 or ss > se or (ss == 0) != (se == 0) or ah > 13 or al > 13
                        or (ss > 0 and count != 1)):
        raise _Bad(f"corrupt JPEG (its pixel data is garbage: bad progressive parameters Ss={ss} Se={se})")
    if frame in (0xC9, 0xCA):  # arithmetic coding: no Huffman tables
        return
    for k in range(count):
        dc, ac = segment[2 + 2 * k] >> 4, segment[2 + 2 * k] & 0x0F
        need = [(0, dc), (1, ac)] if not progressive else [(0, dc)] if ss == 0 and ah == 0 else [(1, ac)] if ss else []
        missing = [f"{c}{t}" for c, t in need if (c << 4 | t) not in tables]
        if missing:
            raise _Bad(f"corrupt JPEG (its pixel data is garbage: Huffman table {missing[0]} not defined)")


def _png_size(f) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR, after checking every chunk's
    CRC up to IEND (what libpng rejects mid-epoch)."""
    f.seek(8)
    size = None
    seen_pixels = False
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise _Bad("truncated PNG (no end chunk)")
        length, kind = int.from_bytes(head[:4], "big"), head[4:]
        data = f.read(length)
        crc = f.read(4)
        if len(data) < length or len(crc) < 4:
            raise _Bad(f"truncated PNG (in its {kind.decode('latin-1')} chunk)")
        if zlib.crc32(kind + data) != int.from_bytes(crc, "big"):
            raise _Bad(f"corrupt PNG (bad checksum in its {kind.decode('latin-1')} chunk)")
        if size is None:
            if kind != b"IHDR" or length < 8:
                raise _Bad("corrupt PNG (no header chunk)")
            size = int.from_bytes(data[4:8], "big"), int.from_bytes(data[:4], "big")
        if kind == b"IDAT" and not seen_pixels:
            # The start of the pixel data must inflate: garbage with a
            # correct CRC would otherwise fail only when decoded mid-run.
            seen_pixels = True
            try:
                zlib.decompressobj().decompress(data[:65536], 1 << 16)
            except zlib.error:
                raise _Bad("corrupt PNG (its pixel data is not valid compressed data)") from None
        if kind == b"IEND":
            return size


def _jpeg_header_size(data: bytes) -> Optional[tuple[int, int]]:
    """(height, width) from a JPEG's frame header, walking only the
    segments before it; None when it is not in `data` (read the whole
    file)."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise _Bad("corrupt JPEG (no marker where one should be)")
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos + 3 > end:
            return None
        code, length = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
        pos += 1
        if code == 0x01 or 0xD0 <= code <= 0xD8:
            continue
        if code in (0xD9, 0xDA):
            raise _Bad("corrupt JPEG (no frame header)" if code == 0xD9 else
                       "corrupt JPEG (image data before its frame header)")
        if length < 2:
            raise _Bad("corrupt JPEG (bad segment length)")
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            if pos + length > end:
                return None
            return _jpeg_frame(data[pos + 2 : pos + length], code)[0]
        pos += length
    return None


def _png_header_size(head: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's header chunk alone (the 25 bytes after
    the signature)."""
    if len(head) < 25 or head[4:8] != b"IHDR" or int.from_bytes(head[:4], "big") != 13:
        raise _Bad("corrupt PNG (no header chunk)")
    if zlib.crc32(head[4:21]) != int.from_bytes(head[21:25], "big"):
        raise _Bad("corrupt PNG (bad checksum in its IHDR chunk)")
    return int.from_bytes(head[12:16], "big"), int.from_bytes(head[8:12], "big")


def _pillow_size(f, fmt: str) -> tuple[int, int]:
    """(height, width) of a GIF or BMP, as Pillow parses and verifies it."""
    from PIL import Image

    f.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning etc.
            with Image.open(f, formats=[fmt.upper()]) as im:
                width, height = im.size
                im.verify()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad data
        raise _Bad(f"corrupt {fmt.upper()} ({exc})") from None
    return height, width


def check_image(path: str, target: Optional[Sequence[int]] = None, quick: bool = False) -> tuple[Optional[int], str]:
    """Check that a file is an image TensorFlow can decode, cheaply.

    JPEG: every marker and segment to the end-of-image marker, and the
    markers inside its pixel data (garbage there, or a truncated file,
    would fail mid-epoch). PNG: every chunk
    and its CRC up to the end chunk. GIF: its trailer, then Pillow. BMP:
    its declared size, then Pillow. No pixels are decoded.

    Args:
        path: the file.
        target: the (height, width) it will be resized to; a JPEG at least
            twice as large gets a code that decodes it scaled down.
        quick: JPEG and PNG: read the headers only (format, size, code),
            for a caller that handles files failing to decode itself.

    Returns:
        (decoder code, "") for a good file, or (None, what is wrong).
    """
    try:
        found = _quick_size(path) if quick else None
        if found is not None:
            fmt, (height, width) = found
        else:
            fmt, (height, width) = _walked_size(path)
    except _Bad as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    return _code(fmt, height, width, target)


def _quick_size(path: str) -> Optional[tuple[str, tuple[int, int]]]:
    """(format, (height, width)) of a JPEG or PNG from its first 64 KiB,
    in one read of the raw file; None for what needs the walk (a JPEG frame
    header further in, other formats, an empty file)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    fmt = sniff_format(data[:16])
    if fmt == "jpeg":
        found = _jpeg_header_size(data)
        return None if found is None else (fmt, found)
    if fmt == "png":
        return fmt, _png_header_size(data[8:33])
    return None


def _walked_size(path: str) -> tuple[str, tuple[int, int]]:
    """(format, (height, width)) of a file, its structure walked (see
    `check_image`). Raises _Bad for what is wrong with it."""
    with open(path, "rb") as f:
        head = f.read(16)
        if not head:
            raise _Bad("empty file")
        fmt = sniff_format(head)
        if fmt is None:
            raise _Bad("not a JPEG, PNG, GIF or BMP image")
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if fmt == "jpeg":
            return fmt, _jpeg_walk(f.read())
        if fmt == "png":
            return fmt, _png_size(f)
        if fmt == "gif":
            f.seek(size - 1)
            if f.read(1) != b";":
                raise _Bad("truncated GIF (no trailer)")
            return fmt, _pillow_size(f, fmt)
        declared = int.from_bytes(head[2:6], "little")
        if declared and size < declared:
            raise _Bad(f"truncated BMP ({size} of {declared} bytes)")
        return fmt, _pillow_size(f, fmt)


def _code(fmt: str, height: int, width: int, target: Optional[Sequence[int]]) -> tuple[Optional[int], str]:
    """The decoder code of a well-formed image of this size, or (None, why)
    for one with no pixels or too many."""
    if width < 1 or height < 1:
        return None, "image has no pixels"
    if width * height > MAX_PIXELS:
        return None, f"header claims {width}x{height} pixels (over {MAX_PIXELS:,}: a damaged header or a decompression bomb)"
    if fmt == "jpeg" and target is not None:
        # libjpeg can scale by 1/2, 1/4 or 1/8 while decoding (in the DCT
        # domain): a large photo then costs a fraction of a full decode,
        # and the scaled image is properly low-passed, so the bilinear
        # resize after it aliases less. Scale only as far as the image
        # stays at least the target size.
        fits = [k for k, r in enumerate(JPEG_SCALES) if height // r >= target[0] and width // r >= target[1]]
        return JPEG + (fits[-1] if fits else 0), ""
    return _FORMAT_CODES[fmt], ""


def check_images(
    paths: Sequence[str], target: Optional[Sequence[int]] = None, workers: Optional[int] = None,
    quick: bool = False,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Run `check_image` over many files (to be resized to `target`;
    headers only if `quick`) in a thread pool.

    Returns:
        An int32 array of decoder codes (-1 for a bad file) and the
        `(path, reason)` list of bad files, in input order.
    """
    codes = np.full(len(paths), -1, np.int32)
    bad: list[tuple[str, str]] = []
    if not paths:
        return codes, bad
    # Mostly file I/O (the GIL is released while reading); threads hide
    # the latency of cold caches and network file systems. Reading headers
    # only is so little I/O per file that threads cost more than they hide
    # (2,000 files on 2 cores: 0.04 CPU s in one thread, 0.2 in eight).
    workers = workers or (1 if quick else min(32, 4 * (os.cpu_count() or 1)))
    check = functools.partial(check_image, target=target, quick=quick)
    # One task per block of files: a thread pool ignores map's chunksize,
    # and a task per file doubles the cost of the check.
    block = 64
    blocks = [paths[i : i + block] for i in range(0, len(paths), block)]
    scanning.report("checking images", 0, len(paths))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = (pool.map if workers > 1 else map)(lambda chunk: [check(p) for p in chunk], blocks)
        i = 0
        for chunk in results:
            for code, why in chunk:
                if code is None:
                    bad.append((paths[i], why))
                else:
                    codes[i] = code
                i += 1
            scanning.report("checking images", i, len(paths))
    return codes, bad


def describe_bad(bad: list[tuple[str, str]], limit: int = 3) -> str:
    """'3 unreadable files (a.jpg: empty file; ...)'."""
    shown = "; ".join(f"{p}: {why}" for p, why in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} unreadable file{'s' if len(bad) != 1 else ''} ({shown}{more})"


