#!/bin/sh
# install-test-tools.sh installs the Debian packages some tests drive:
# chromium (the dashboard's browser test, headless) and nodejs (the Node
# client example of the HTTP API). It installs only what is missing, prints
# nothing on success, and prints apt's output only when an install fails.
# Run it as root (CI images) or with sudo available.
set -eu

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-test-tools.sh: not root and no sudo: install$missing by hand" >&2
		exit 1
	fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2086 # $missing is a list of package names
if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "install-test-tools.sh: apt-get install$missing failed" >&2
	exit 1
fi
[ -x /usr/bin/chromium ] || { echo "install-test-tools.sh: chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "install-test-tools.sh: nodejs installed but node is missing" >&2; exit 1; }
