#!/usr/bin/env python3
"""Run the Python binding tests under pytest; exit 77 (meson: skipped) when numpy or
pytest is not importable by this interpreter. Usage: run_pytest.py <tests dir> [args]"""
import sys

try:
    import numpy  # noqa: F401
    import pytest
except ImportError as e:
    print("skipping the Python binding tests: %s" % e)
    sys.exit(77)

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider"] + sys.argv[1:]))
