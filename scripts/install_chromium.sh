#!/usr/bin/env bash
# The browser tests (tests/test_serve_page.py) drive Debian's Chromium through Debian's chromedriver.
# Install both where this machine allows it (root or password-less sudo, apt-get); otherwise say
# why and go on: those tests then skip with the reason.
set -u
if command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_chromium: no apt-get here; the browser tests will skip" >&2; exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "install_chromium: not root and no password-less sudo; the browser tests will skip" >&2; exit 0
fi
echo "installing chromium and chromium-driver (Debian packages) for the browser tests" >&2
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } >/tmp/fastfill-apt.log 2>&1; then
  echo "install_chromium: apt-get failed (see /tmp/fastfill-apt.log); the browser tests will skip" >&2
fi
exit 0
