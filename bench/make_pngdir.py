#!/usr/bin/env python3
"""Write a folder of synthetic RGB PNG images (issue 8 scaling runs, bench/IMAGES.md).

Each image is a smooth random colour gradient with a few filled discs: structure a
flow can learn, cheap to make. Only the standard library and numpy (no PIL).

Usage: /usr/bin/python3 bench/make_pngdir.py DIR COUNT SIZE [SEED]
"""
import os
import struct
import sys
import zlib

import numpy as np


def png_bytes(rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def main():
    out, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    os.makedirs(out, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / float(size)
    for i in range(count):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        a = rng.uniform(0, 2 * np.pi)
        s = (np.cos(a) * xx + np.sin(a) * yy + 1) / 2
        img = (1 - s)[..., None] * c0 + s[..., None] * c1
        for _ in range(3):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        with open(os.path.join(out, "img%05d.png" % i), "wb") as f:
            f.write(png_bytes(np.clip(img, 0, 255).astype(np.uint8)))


if __name__ == "__main__":
    main()
