#!/usr/bin/env bash
# The dashboard's browser tests (tests/browser) need Debian's Chromium at /usr/bin/chromium. Install
# it with apt-get when it is missing (as root); fail loudly when that is impossible.
set -u
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "error: $CHROMIUM is missing; install it as root: apt-get install -y chromium" >&2
  exit 1
fi
echo "Chromium is missing; installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "error: apt-get could not install chromium ($CHROMIUM still missing)" >&2
  exit 1
fi
