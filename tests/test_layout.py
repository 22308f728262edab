"""The one-namespace layout: `tokenize/` must never shadow the standard library (docs/DESIGN.md)."""

import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from conftest import REPO

CHECK = (
    "import tokenize, inspect, sysconfig, pathlib, sys\n"
    "stdlib = pathlib.Path(sysconfig.get_paths()['stdlib']).resolve()\n"
    "assert pathlib.Path(tokenize.__file__).resolve().parent == stdlib, tokenize.__file__\n"
    "assert hasattr(tokenize, 'generate_tokens') and inspect.getsource(inspect.ismodule)\n"
    "import slimpajama.tokenize.encodings as enc, slimpajama.pipelines, slimpajama.packers\n"
    "import slimpajama.train_minimal, slimpajama.cli, slimpajama.core.schema, slimpajama.io.discover\n"
    "import slimpajama.tools.stats\n"
    "assert enc.GPT2_EOS_ID == 50256\n"
    "print(pathlib.Path(enc.__file__).resolve())\n"
)


def test_stdlib_tokenize_wins_in_editable_install():
    """From the repo root (on sys.path as ''), `tokenize` is the stdlib and `slimpajama.tokenize` imports."""
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert pathlib.Path(out.stdout.strip()) == (REPO / "tokenize" / "encodings.py").resolve()


def test_stdlib_tokenize_wins_with_built_wheel(tmp_path):
    """Build a wheel from the tree, install it alone into a fresh venv that sees the dev venv's dependencies
    but not its editable finder, and run the same check from the repo root."""
    wheels = tmp_path / "wheels"
    src = tmp_path / "src"  # build from a copy: setuptools leaves build/ behind in the tree it builds
    top_level = {".venv", ".git", "data", "build", "benchmarks", "slimpajama.egg-info", ".hypothesis"}
    shutil.copytree(REPO, src, ignore=lambda d, names: [n for n in names if n == "__pycache__" or
                                                        (pathlib.Path(d) == REPO and n in top_level)])
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, capture_output=True)
    (wheel,) = wheels.glob("slimpajama-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "slimpajama/tokenize/encodings.py" in names
    assert "slimpajama/pipelines/runner.py" in names
    for sub in ("cli", "core", "io", "tools"):  # the regular subpackages of the namespace
        assert f"slimpajama/{sub}/__init__.py" in names
    assert not any(n.startswith("tokenize/") for n in names)
    assert "slimpajama/__init__.py" not in names and "slimpajama/tokenize/__init__.py" not in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = pathlib.Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       check=True, capture_output=True, text=True).stdout.strip())
    zipfile.ZipFile(wheel).extractall(site)
    # A .pth line only adds a directory: the dev venv's own .pth files (the editable finder) are not executed.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run([py, "-c", CHECK], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert pathlib.Path(out.stdout.strip()).is_relative_to(site.resolve())
