#!/usr/bin/env bash
# Headless Chromium for the leaderboard's HTML test (tests/test_results.py): Debian's package.
# A step of the README's test command; does nothing when a Chromium is already installed.
set -euo pipefail
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: no chromium on PATH and no apt-get: install Chromium with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
