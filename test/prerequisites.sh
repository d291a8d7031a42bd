#!/bin/sh
# The programs the tests drive, installed on the way when missing (npm test
# runs this first, as "pretest"): systemd-socket-activate and systemd-analyze
# (systemd), headless chromium (the dashboard test), python3 (the conformance
# client, a NOTIFY_SOCKET listener, processes mapping buffer fds), script
# (bsdutils: a terminal for bufctl watch and the daemon's log).
# As root (or with sudo) on Debian/Ubuntu they are installed with apt-get;
# otherwise this says in one line what to install, and the tests that need a
# missing program fail naming it.
need=""
command -v systemd-socket-activate >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v python3 >/dev/null 2>&1 || need="$need python3"
command -v script >/dev/null 2>&1 || need="$need bsdutils"
[ -z "$need" ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
    echo "tests need:$need — install them first: sudo apt-get install$need" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "tests need:$need — install them with your package manager (Debian names:$need)" >&2
  exit 0
fi
echo "== installing what the tests drive: apt-get install$need" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null \
  || echo "apt-get install$need failed: the tests that need them will fail" >&2
exit 0
