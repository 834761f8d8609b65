#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed for the end-to-end tests (Playwright drives
# /usr/bin/chromium; no browser is downloaded by Playwright itself), with a colour emoji font
# so reactions and the emoji picker render as emoji in the screenshots, not as empty boxes.
# Quick when both are present.
set -euo pipefail

EMOJI_FONT=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
if [ -x /usr/bin/chromium ] && [ -f "$EMOJI_FONT" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
[ -x /usr/bin/chromium ] || { echo "chromium is not installed at /usr/bin/chromium" >&2; exit 1; }
[ -f "$EMOJI_FONT" ] || { echo "fonts-noto-color-emoji did not install $EMOJI_FONT" >&2; exit 1; }
echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
