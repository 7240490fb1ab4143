#!/usr/bin/env python3
"""Write the seed corpora of fuzz_idx and fuzz_pngdir (fuzz/corpus/idx, fuzz/corpus/pngdir).

    /usr/bin/python3 fuzz/make_image_corpus.py fuzz/corpus

Deterministic (gzip mtime 0). seed-* files are valid; bad-* files are each rejected for
one reason the loader names. A pngdir input is one PNG file or several concatenated
(fuzz_pngdir.c cuts the input at each PNG signature into the files of a directory)."""
import gzip
import os
import struct
import sys
import zlib


def idx(dims, data, typ=0x08):
    return bytes([0, 0, typ, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def gz(b):
    return gzip.compress(b, compresslevel=9, mtime=0)


def chunk(t, d, length=None):
    n = len(d) if length is None else length
    return struct.pack(">I", n) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


SIG = b"\x89PNG\r\n\x1a\n"


def png(w, h, depth, ctype, rows, extra=b"", interlace=0, plte=None, trns=None):
    """rows: the filtered scanlines (filter byte 0 + packed samples), already laid out."""
    s = SIG + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))
    s += extra
    if plte:
        s += chunk(b"PLTE", plte)
    if trns:
        s += chunk(b"tRNS", trns)
    return s + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def rows8(px, w, h, spp=1, bps=1):
    """8- or 16-bit samples px[y][x*spp*bps ...] -> scanlines with filter 0."""
    stride = w * spp * bps
    return b"".join(b"\x00" + bytes(px[y * stride:(y + 1) * stride]) for y in range(h))


def adam7(px, w, h):
    """8-bit gray pixels -> interlaced scanlines (the seven Adam7 passes)."""
    out = b""
    for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                           (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
        xs = list(range(x0, w, dx))
        if not xs:
            continue
        for y in range(y0, h, dy):
            out += b"\x00" + bytes(px[y * w + x] for x in xs)
    return out


def main(root):
    ci = os.path.join(root, "idx")
    cp = os.path.join(root, "pngdir")
    os.makedirs(ci, exist_ok=True)
    os.makedirs(cp, exist_ok=True)

    def put(d, name, b):
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)

    g = [(7 * i + i // 5) & 255 for i in range(3 * 4 * 5)]
    rgb = [(11 * i + 3) & 255 for i in range(2 * 3 * 2 * 3)]
    a = idx([3, 4, 5], g)
    b = idx([2, 3, 2, 3], rgb)
    put(ci, "seed-raw-3d-gray", a)
    put(ci, "seed-raw-4d-rgb", b)
    put(ci, "seed-gz-3d-gray", gz(a))
    put(ci, "seed-gz-4d-rgb", gz(b))
    put(ci, "seed-gz-two-members", gz(a[:30]) + gz(a[30:]))
    put(ci, "bad-label-1d", idx([16], range(16)))
    put(ci, "bad-raw-truncated", a[:-1])
    put(ci, "bad-raw-trailing", a + b"\x00")
    put(ci, "bad-gz-trailing-garbage", gz(a) + b"garbage")
    put(ci, "bad-float32-type", idx([1, 2, 2], b"\x00" * 16, typ=0x0D))
    c = bytearray(gz(a))
    c[-6] ^= 0x55  # inside the CRC-32
    put(ci, "bad-gz-crc", bytes(c))
    put(ci, "bad-2-channels", idx([1, 2, 2, 2], range(8)))

    g16 = [(13 * i) & 255 for i in range(16)]
    put(cp, "seed-gray8-4x4", png(4, 4, 8, 0, rows8(g16, 4, 4)))
    g15 = [(17 * i) & 255 for i in range(15)]
    put(cp, "seed-gray8-interlaced-5x3", png(5, 3, 8, 0, adam7(g15, 5, 3), interlace=1))
    put(cp, "seed-gray1-8x2", png(8, 2, 1, 0, b"\x00\xa5\x00\x5a"))
    put(cp, "seed-palette-trns-3x2",
        png(3, 2, 8, 3, rows8([0, 1, 2, 3, 0, 1], 3, 2),
            plte=bytes([10, 20, 30, 40, 50, 60, 70, 80, 90, 255, 0, 128]),
            trns=bytes([0, 128, 255, 255])))
    put(cp, "seed-rgba16-2x2", png(2, 2, 16, 6, rows8([(29 * i) & 255 for i in range(32)], 2, 2, 4, 2)))
    put(cp, "seed-graya8-3x3", png(3, 3, 8, 4, rows8([(5 * i) & 255 for i in range(18)], 3, 3, 2)))
    r1 = png(2, 2, 8, 2, rows8(list(range(12)), 2, 2, 3))
    r2 = png(2, 2, 8, 2, rows8(list(range(100, 112)), 2, 2, 3),
             extra=chunk(b"tEXt", b"Comment\x00second file"))
    put(cp, "seed-rgb8-two-files", r1 + r2)
    put(cp, "seed-gray-three-files",
        png(4, 4, 8, 0, rows8(g16, 4, 4)) + png(4, 4, 4, 0, b"\x00\x12\x34" * 4)
        + png(4, 4, 16, 0, rows8(list(range(32)), 4, 4, 1, 2)))
    put(cp, "bad-size-mismatch", png(4, 4, 8, 0, rows8(g16, 4, 4)) + png(4, 3, 8, 0, rows8(g16, 4, 3)))
    put(cp, "bad-gray-and-rgb", png(2, 2, 8, 0, rows8([1, 2, 3, 4], 2, 2)) + r1)
    c = bytearray(png(4, 4, 8, 0, rows8(g16, 4, 4)))
    c[-20] ^= 0xFF  # IDAT data / CRC
    put(cp, "bad-idat-crc", bytes(c))
    huge = struct.pack(">I", 0x7FFFFFFF) + b"tEXtComment\x00hello" + bytes(64)
    put(cp, "bad-text-claims-2GiB", png(8, 8, 8, 0, rows8([0] * 64, 8, 8), extra=huge)[:33 + len(huge)])
    put(cp, "bad-truncated", png(4, 4, 8, 0, rows8(g16, 4, 4))[:45])
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 1, 3, 0, 0, 0)
    put(cp, "bad-bomb-header", SIG + chunk(b"IHDR", ihdr) + chunk(b"PLTE", bytes(6))
        + chunk(b"IDAT", zlib.compress(bytes(3751 * 64), 9)) + chunk(b"IEND", b""))
    put(cp, "bad-not-png", b"GIF89a not really a PNG")
    # expansion bombs: a 1-bit palette image of 4000 x 4000 (2 MB of rows, 48 MB as RGB)
    # and three 2000 x 2000 1-bit gray files (4 MB decoded each) of ~560 bytes
    w = 4000
    put(cp, "bad-palette-expansion",
        png(w, w, 1, 3, (b"\x00" + bytes(w // 8)) * w, plte=bytes([0, 0, 0, 255, 255, 255])))
    w = 2000
    put(cp, "bad-small-files-2000x2000", png(w, w, 1, 0, (b"\x00" + bytes(w // 8)) * w) * 3)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"))
