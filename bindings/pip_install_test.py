#!/usr/bin/env python3
"""`pip install` of the repository into a fresh virtual environment, then use it from
another directory: the package must find the library packed in its wheel, and `pip show`
and `pip uninstall` must work. Exit 77 (meson: skipped) when a tool it needs is missing.

Usage: pip_install_test.py <source root> <persistent meson-python build dir>

The build directory persists between runs (meson-python reconfigures and rebuilds only
what changed), so only the first run compiles the library (~1 minute on two cores)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

PY = "/usr/bin/python3"


def skip(why):
    print("skipping the pip install test: %s" % why)
    sys.exit(77)


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        print(r.stdout)
        raise SystemExit("failed (%d): %s" % (r.returncode, " ".join(cmd)))
    return r.stdout


def main():
    root, builddir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if not os.path.exists(PY):
        skip("no /usr/bin/python3")
    probe = subprocess.run([PY, "-c", "import mesonpy, venv, ensurepip"], capture_output=True)
    if probe.returncode != 0:
        skip("python3-mesonpy or python3-venv is not installed (apt-get install "
             "python3-mesonpy python3-venv)")
    if shutil.which("patchelf") is None:
        skip("patchelf is not installed (meson-python needs it for the packed library)")
    want = re.search(r"version:\s*'([0-9.]+)'", open(os.path.join(root, "meson.build")).read())
    env = {k: v for k, v in os.environ.items()
           if k not in ("STOCHFLOW_LIBRARY", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix="stochflow-pip-") as tmp:
        venv = os.path.join(tmp, "venv")
        run([PY, "-m", "venv", "--system-site-packages", venv], env=env)
        vpy = os.path.join(venv, "bin", "python")
        run([vpy, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-cache-dir",
             "--no-index", "--config-settings=builddir=" + builddir, root], env=env, cwd=tmp)
        elsewhere = os.path.join(tmp, "elsewhere")
        os.mkdir(elsewhere)
        out = run([vpy, "-c", "import stochflow as sf, numpy as np\n"
                   "m = sf.Model(2, hidden=(8,), seed=1)\n"
                   "m.train_step(sf.toy_sample('moons', 16, seed=1))\n"
                   "x = sf.parse_csv('a,b\\n1,2\\n')\n"
                   "print('FILE', sf.__file__)\nprint('LIB', sf.library_path)\n"
                   "print('VERSION', sf.__version__)"], env=env, cwd=elsewhere)
        lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        site = os.path.realpath(venv)
        assert os.path.realpath(lines["FILE"]).startswith(site), out
        assert os.path.realpath(lines["LIB"]).startswith(site), out
        assert lines["VERSION"] == want.group(1), out
        show = run([vpy, "-m", "pip", "show", "stochflow"], env=env, cwd=elsewhere)
        assert re.search(r"^Version: %s$" % re.escape(want.group(1)), show, re.M), show
        assert re.search(r"^Location: .*%s" % re.escape(os.path.basename(tmp)), show, re.M), show
        run([vpy, "-m", "pip", "uninstall", "-y", "stochflow"], env=env, cwd=elsewhere)
        gone = subprocess.run([vpy, "-c", "import stochflow; print(stochflow.__file__)"],
                              env=env, cwd=elsewhere, capture_output=True, text=True)
        assert gone.returncode != 0 or not os.path.realpath(gone.stdout.strip()).startswith(site), \
            gone.stdout
        leftovers = [p for p in os.listdir(os.path.join(venv, "lib", "python%d.%d" %
                     sys.version_info[:2], "site-packages")) if "stochflow" in p]
        assert not leftovers, leftovers
    print("pip install, import from another directory, pip show, pip uninstall: ok")


if __name__ == "__main__":
    main()
