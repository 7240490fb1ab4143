"""Image data and U-Net configuration through the Python binding: loading
(IDX raw and gzip, PNG directories), quantization round trips, bits/dim, grids. The
numerics are tested in C (tests/check_images.c); here the conversions and ownership."""
import gc
import gzip
import math
import os
import struct

import numpy as np
import pytest

import stochflow as sf

FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def write_idx(path, images, compress=False):
    """images: uint8 (n, h, w) or (n, h, w, c) -> IDX unsigned-byte file."""
    a = np.ascontiguousarray(images, dtype=np.uint8)
    head = bytes([0, 0, 8, a.ndim]) + struct.pack(">%dI" % a.ndim, *a.shape)
    data = head + a.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return "idx:" + str(path)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_gray(tmp_path, compress):
    imgs = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    src = write_idx(tmp_path / "a.idx", imgs, compress)
    x = sf.images_load(src)
    assert x.shape == (5, 1, 3, 4) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0], imgs)
    assert sf.images_load(src, max_count=2).shape == (2, 1, 3, 4)


def test_load_idx_rgb_is_planar(tmp_path):
    imgs = (np.arange(2 * 2 * 3 * 3) * 7 % 256).astype(np.uint8).reshape(2, 2, 3, 3)
    x = sf.images_load(write_idx(tmp_path / "c.idx", imgs))
    assert x.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(x, imgs.transpose(0, 3, 1, 2))


def test_load_errors(tmp_path):
    with pytest.raises(sf.InvalidArgumentError, match="pngdir:"):
        sf.images_load("jpeg:" + str(tmp_path))
    with pytest.raises(sf.IOFailureError):
        sf.images_load("idx:" + str(tmp_path / "missing.idx"))
    labels = tmp_path / "labels.idx"
    labels.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + b"\x01\x02\x03")
    with pytest.raises(sf.FormatError, match="label"):
        sf.images_load("idx:" + str(labels))
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 2, 2) + b"\x00" * 7)
    with pytest.raises(sf.FormatError, match="truncated"):
        sf.images_load("idx:" + str(short))
    (tmp_path / "empty").mkdir()
    with pytest.raises(sf.FormatError, match="no .png"):
        sf.images_load("pngdir:" + str(tmp_path / "empty"))


def test_loaded_buffer_lifetime(tmp_path):
    src = write_idx(tmp_path / "a.idx", np.full((3, 2, 2), 9, dtype=np.uint8))
    x = sf.images_load(src)
    view = x[1:]  # a view keeps the C buffer alive through the base chain
    del x
    gc.collect()
    assert int(view.sum()) == 9 * 8
    # the buffer is freed once nothing refers to it (the finalizer has run)
    owner = view.base
    while not hasattr(owner, "_stochflow_owner"):
        owner = owner.base if hasattr(owner, "base") else owner._obj
    fin = owner._stochflow_owner._finalizer
    assert fin.alive
    del view, owner
    gc.collect()
    assert not fin.alive


def test_quantize_roundtrip():
    p = np.arange(256, dtype=np.uint8).reshape(16, 16)
    c = sf.images_to_float(p)
    assert c.dtype == np.float32 and c.shape == (16, 16)
    np.testing.assert_allclose(c, 2 * (p.astype(np.float64) + 0.5) / 256 - 1, atol=1e-7)
    np.testing.assert_array_equal(sf.images_quantize(c), p)
    d = sf.images_dequantize(np.tile(p, (50, 1)), seed=1, stream=2)
    assert d.min() >= -1 and d.max() < 1
    np.testing.assert_array_equal(sf.images_quantize(d), np.tile(p, (50, 1)))
    # element i depends only on (seed, stream, i): a prefix gives the same values
    flat = np.tile(p.ravel(), 20)
    np.testing.assert_array_equal(sf.images_dequantize(flat[:1500], 1, 2),
                                  sf.images_dequantize(flat, 1, 2)[:1500])
    assert not np.array_equal(sf.images_dequantize(flat, 1, 3), sf.images_dequantize(flat, 1, 2))
    assert sf.images_quantize([np.nan, -5.0, 5.0, 0.0]).tolist() == [0, 0, 255, 128]
    with pytest.raises(ValueError, match="uint8"):
        sf.images_to_float(np.zeros(3, dtype=np.float32))


def test_bits_per_dim():
    for d in (1, 784, 3072):
        assert sf.bits_per_dim(-d * math.log(2), d) == pytest.approx(8.0, abs=1e-12)
        assert sf.bits_per_dim(d * math.log(128), d) == pytest.approx(0.0, abs=1e-12)
    v = sf.bits_per_dim(np.array([-784 * math.log(2), 0.0]), 784)
    np.testing.assert_allclose(v, [8.0, 7.0], atol=1e-12)
    # dim < 1 is refused: the C size_t would wrap (-1 gave 7.0, 0 gave NaN)
    for bad in (0, -1, -784, np.int64(-1)):
        with pytest.raises(ValueError):
            sf.bits_per_dim(-1.0, bad)
        with pytest.raises(ValueError):
            sf.bits_per_dim(np.zeros(2), bad)
    with pytest.raises(ValueError):
        sf.bits_per_dim(-1.0, 2.5)


def test_write_grid_and_read_back(tmp_path):
    p = (np.arange(5 * 1 * 3 * 4) * 3 % 256).astype(np.uint8).reshape(5, 1, 3, 4)
    path = tmp_path / "grid.png"
    sf.images_write_grid(path, sf.images_to_float(p))
    # read it back through pngdir: one 1-channel image of the grid's size
    g = sf.images_load("pngdir:" + str(tmp_path))
    assert g.shape == (1, 1, 2 * (3 + 2) + 2, 3 * (4 + 2) + 2)
    grid = g[0, 0]
    assert grid[0, 0] == 128
    np.testing.assert_array_equal(grid[2:5, 2:6], p[0, 0])
    np.testing.assert_array_equal(grid[2 + 5:5 + 5, 2 + 6:6 + 6], p[4, 0])
    # RGB, (n, c, h, w); 3-D gray input is accepted as (n, h, w)
    rgb = sf.images_to_float(np.full((2, 3, 2, 2), 200, dtype=np.uint8))
    sf.images_write_grid(tmp_path / "rgb.png", rgb, ncols=2)
    sf.images_write_grid(tmp_path / "g3.png", np.zeros((4, 2, 2), np.float32))
    with pytest.raises(ValueError):
        sf.images_write_grid(tmp_path / "bad.png", np.zeros((1, 2, 2, 2), np.float32))


@pytest.mark.skipif(not os.path.exists(FASHION), reason="Fashion-MNIST not installed")
def test_fashion_mnist():
    x = sf.images_load("idx:" + FASHION, max_count=1000)
    assert x.shape == (1000, 1, 28, 28)
    assert 60 < x.mean() < 90


def test_unet_config_roundtrip():
    try:
        m = sf.Model(64, unet=dict(channels=1, height=8, width=8, base=8, mult=(1, 2),
                                   groups=4), seed=2, threads=1)
    except sf.UnsupportedError as e:  # the U-Net is not built into this library
        pytest.skip(str(e))
    c = m.config()
    assert c["unet"] == {"channels": 1, "height": 8, "width": 8, "base": 8, "mult": (1, 2),
                         "blocks": 1, "attn_mask": 2, "groups": 4}
    m2 = sf.Model(**c)
    assert m2.config()["unet"] == c["unet"]
    assert "unet" not in sf.Model(2, hidden=(8,)).config()
    with pytest.raises(sf.InvalidArgumentError):
        sf.Model(64, unet=dict(channels=1, height=8, width=8, base=8, mult=(1, 2), groups=3))
    with pytest.raises(TypeError, match="unknown"):
        sf.Model(64, unet=dict(channels=1, height=8, width=8, colour=True))
    assert sf.STOCHFLOW_ARCH_UNET == 2 and sf.STOCHFLOW_UNET_MAX_LEVELS == 6
