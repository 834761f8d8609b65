#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed for the end-to-end tests (Playwright drives
# /usr/bin/chromium; no browser is downloaded by Playwright itself). Quick when present.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
[ -x /usr/bin/chromium ] || { echo "chromium is not installed at /usr/bin/chromium" >&2; exit 1; }
echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
