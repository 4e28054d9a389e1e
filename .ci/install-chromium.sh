#!/bin/sh
# install-chromium.sh installs Debian's chromium package, which the
# dashboard's browser test (internal/dashboard) drives headless. It does
# nothing when /usr/bin/chromium is already there, prints nothing on
# success, and prints apt's output only when the install fails.
# Run it as root (CI images) or with sudo available.
set -eu

[ -x /usr/bin/chromium ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-chromium.sh: not root and no sudo: install the chromium package by hand" >&2
		exit 1
	fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "install-chromium.sh: apt-get install chromium failed" >&2
	exit 1
fi
[ -x /usr/bin/chromium ] || { echo "install-chromium.sh: chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
