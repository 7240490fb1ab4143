"""Golden conformance: the Python binding reproduces tests/data/golden.txt bit for bit
(as do the C suite check_golden and the Rust test golden.rs)."""
import numpy as np

from golden import golden_path, read_golden, run_scenario


def test_golden_bits():
    want = read_golden(golden_path())
    got = run_scenario()
    assert sorted(want) == sorted(got)
    for name in want:
        w, g = want[name], got[name]
        assert w.shape == g.shape, name
        bad = np.flatnonzero(w != g)
        if bad.size:
            i = bad[0]
            ft = np.float64 if w.dtype == np.uint64 else np.float32
            raise AssertionError("%s[%d]: computed %r, golden %r (%d values differ)" % (
                name, i, g.view(ft)[i], w.view(ft)[i], bad.size))
