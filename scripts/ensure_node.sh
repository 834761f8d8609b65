#!/usr/bin/env bash
# Makes sure node and npm exist for the web client build (Debian's packages where missing).
set -euo pipefail
if command -v node >/dev/null && command -v npm >/dev/null; then exit 0; fi
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
command -v npm >/dev/null || { echo "npm is not available" >&2; exit 1; }
