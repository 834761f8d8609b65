"""The package a user installs carries its web client, and serves it.

From a clean copy of the checkout (the files git knows, so no bundle built here sneaks in):
``python -m build --sdist`` builds the bundle through setup.py's hook and the sdist carries
it with web/'s sources; a wheel built from that sdist, with the bundle deleted, builds it
again from those sources. The wheel goes into a fresh virtualenv (dependencies seen from
this one through a .pth file, the package itself only from the wheel), and its
``dihya-realtime serve`` answers ``/`` and every /static asset the page names with 200.
Without npm and without a bundle, the build stops and says why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.conftest import READY, clean_environ

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ("app.js", "app.js.map", "app.css", "app.css.map")
WEB_SOURCES = ("web/package.json", "web/package-lock.json", "web/src/app.js", "web/src/app.css")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".map": "json", ".svg": "image/svg",
                 ".png": "image/png", ".ico": "image"}
BUILD_TIMEOUT = 240


def clean_copy(dest: Path) -> Path:
    """The checkout's files that git tracks or would track (ignored ones, such as the built
    bundle, node_modules and .venv, are left out), copied to ``dest``."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to tell source files from built ones")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert not (dest / "src/dihya_realtime/static/app.js").exists()
    return dest


def build(project: Path, kind: str, outdir: Path,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "build", f"--{kind}", "--outdir", str(outdir),
                           str(project)], cwd=project, env=env or clean_environ(),
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)


def fresh_venv(path: Path) -> Path:
    """A new virtualenv whose dependencies come from this one (a .pth file appends this
    venv's site-packages after its own, so whatever it installs itself comes first)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=60)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "dependencies-from-the-test-venv.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return response.status, response.headers.get("Content-Type", ""), response.read()


def start_serve(venv: Path, workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    out = open(workdir / "serve.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([str(venv / "bin" / "dihya-realtime"), "serve", "--port", str(port)],
                            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    out.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = (workdir / "serve.log").read_text(errors="replace")
        if READY in log:
            return proc, port
        if proc.poll() is not None:
            pytest.fail(f"serve from the wheel exited with {proc.returncode}:\n{log}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"serve from the wheel not ready:\n{(workdir / 'serve.log').read_text()}")


@pytest.mark.timeout(2 * BUILD_TIMEOUT + 60)
def test_wheel_from_a_clean_checkout_serves_the_page_and_every_asset(tmp_path, jwt_secret):
    if shutil.which("npm") is None:
        pytest.skip("npm is needed to build the web client (make install provides it)")
    project = clean_copy(tmp_path / "checkout")
    dist = tmp_path / "dist"

    sdist_run = build(project, "sdist", dist)
    assert sdist_run.returncode == 0, sdist_run.stderr[-4000:]
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert {f"src/dihya_realtime/static/{name}" for name in BUNDLE} <= members
    assert set(WEB_SOURCES) <= members
    assert not any("node_modules" in name for name in members)

    # the wheel from the sdist, its bundle deleted: the hook builds it from web/ in the sdist
    (from_sdist,) = (tmp_path / "unpacked").iterdir()
    for name in BUNDLE:
        (from_sdist / "src/dihya_realtime/static" / name).unlink()
    wheel_run = build(from_sdist, "wheel", dist)
    assert wheel_run.returncode == 0, wheel_run.stderr[-4000:]
    assert "npm run --silent build" in wheel_run.stderr
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    for name in BUNDLE:
        assert sizes.get(f"dihya_realtime/static/{name}", 0) > 0, name

    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True,
                             timeout=120, check=False)
    assert install.returncode == 0, install.stderr
    where = subprocess.run([str(python), "-c", "import dihya_realtime; "
                            "print(dihya_realtime.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where

    workdir = tmp_path / "run"
    workdir.mkdir()
    env = {**clean_environ(), "DIHYA_RT_DATABASE_URL": f"sqlite:///{workdir / 'rt.db'}",
           "DIHYA_RT_JWT_SECRET": jwt_secret, "DIHYA_RT_AUDIT_LOG": str(workdir / "audit.log")}
    migrate = subprocess.run([str(venv / "bin" / "dihya-realtime"), "migrate"], cwd=workdir,
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert migrate.returncode == 0, migrate.stderr
    proc, port = start_serve(venv, workdir, env)
    try:
        status, content_type, page = fetch(f"http://127.0.0.1:{port}/")
        assert status == 200 and content_type.startswith("text/html")
        html = page.decode()
        assets = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
        assert {a.split("?")[0] for a in assets} >= {"/static/app.js", "/static/app.css"}, html
        assert "v=missing" not in html
        for asset in sorted(assets):
            status, content_type, body = fetch(f"http://127.0.0.1:{port}{asset}")
            suffix = os.path.splitext(asset.split("?")[0])[1]
            assert status == 200, asset
            assert CONTENT_TYPES[suffix] in content_type, (asset, content_type)
            assert body, asset
            if suffix == ".js":  # its source map too, as the browser would fetch it
                status, content_type, body = fetch(f"http://127.0.0.1:{port}"
                                                   f"{asset.split('?')[0]}.map")
                assert status == 200 and body, asset + ".map"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.timeout(BUILD_TIMEOUT + 30)
def test_a_build_without_npm_or_bundle_fails_and_says_why(tmp_path):
    project = clean_copy(tmp_path / "checkout")
    no_tools = tmp_path / "bin"  # an empty PATH: no npm (build runs Python by its full path)
    no_tools.mkdir()
    env = {**clean_environ(), "PATH": str(no_tools)}
    result = build(project, "wheel", tmp_path / "dist", env=env)
    assert result.returncode != 0
    assert "cannot build the web client bundle" in result.stderr + result.stdout
    assert "npm is not on PATH" in result.stderr + result.stdout
    assert not any((tmp_path / "dist").glob("*.whl"))
