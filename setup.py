"""Build hook: the sdist and the wheel carry the demo web client's bundle.

The page at ``/`` loads ``static/app.js`` and ``static/app.css``, which esbuild makes from
``web/`` (they are not in git). Before setuptools gathers the package's files, ``sdist`` and
``build_py`` build the bundle when it is absent or older than its sources: ``npm ci`` from the
lockfile (no install scripts), then ``npm run build``. The sdist carries both the bundle and
``web/``'s sources (MANIFEST.in), so a wheel built from it has the bundle with or without npm.
Without npm and without a bundle the build stops with a message: never a wheel without its
web client. An editable install (``pip install -e``) serves the checkout's ``static/``, which
``make web`` builds, so it is left alone here.

Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
BUNDLE_FILES = ("app.js", "app.js.map", "app.css", "app.css.map", "sw.js", "events.js",
                "admin.js", "admin.css")  # every esbuild entry of web/package.json
STATIC_DIR = Path("src", "dihya_realtime", "static")
NPM_STEPS = (("ci", "--ignore-scripts", "--no-audit", "--no-fund"), ("run", "--silent", "build"))


class WebBundleError(RuntimeError):
    """The web client cannot be built and no bundle exists: the build must stop."""


def bundle_state(root: Path) -> str:
    """``absent`` (a bundle file is missing), ``stale`` (a web source is newer) or ``current``."""
    bundle = [root / STATIC_DIR / name for name in BUNDLE_FILES]
    if not all(path.is_file() for path in bundle):
        return "absent"
    web = root / "web"
    sources = [web / "package.json", web / "package-lock.json"]
    for src in (web / "src", root / "clients" / "js" / "src"):  # the demo imports the client
        if src.is_dir():
            sources += [p for p in src.rglob("*") if p.is_file()]
    newest_source = max((p.stat().st_mtime for p in sources if p.is_file()), default=0.0)
    oldest_output = min(p.stat().st_mtime for p in bundle)
    return "stale" if newest_source > oldest_output else "current"


def build_web_bundle(root: Path, npm: str | None = None) -> str:
    """Make ``root``'s bundle current; returns the state it was found in.

    ``npm`` defaults to the one on PATH. Raises :class:`WebBundleError` when the bundle is
    absent and cannot be built (no npm, no ``web/``, or npm failing).
    """
    state = bundle_state(root)
    if state == "current":
        return state
    npm = npm if npm is not None else shutil.which("npm")
    web = root / "web"
    if npm is None or not (web / "package-lock.json").is_file():
        why = "npm is not on PATH" if npm is None else f"{web / 'package-lock.json'} is missing"
        if state == "stale":
            print(f"warning: the web client bundle is older than web/ but {why}; "
                  "packaging the existing bundle", file=sys.stderr)
            return state
        raise WebBundleError(
            f"cannot build the web client bundle ({STATIC_DIR}/app.js, app.css): {why}. "
            "Install Node.js and npm (e.g. `apt-get install nodejs npm`), or run `make web` "
            "where they are, then build again. A package without its web client is not made.")
    for step in NPM_STEPS:
        print(f"building the web client: npm {' '.join(step)}", file=sys.stderr)
        done = subprocess.run([npm, *step], cwd=web, check=False)
        if done.returncode != 0:
            raise WebBundleError(f"`npm {' '.join(step)}` in {web} failed with exit status "
                                 f"{done.returncode}: the web client bundle was not built")
    if bundle_state(root) == "absent":
        raise WebBundleError(f"`npm run build` did not write {STATIC_DIR}/{BUNDLE_FILES}")
    return state


class BuildPyWithWebBundle(build_py):
    """``build_py`` that builds the web bundle first (not for an editable install)."""

    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            build_web_bundle(ROOT)
            self.__dict__.pop("data_files", None)  # package data is listed again, bundle included
        super().run()


class SdistWithWebBundle(sdist):
    """``sdist`` that builds the web bundle first, so the archive carries it."""

    def run(self) -> None:
        build_web_bundle(ROOT)
        super().run()


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithWebBundle, "sdist": SdistWithWebBundle})
