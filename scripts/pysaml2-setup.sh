#!/usr/bin/env bash
# Makes the Python virtualenv in which pysaml2 runs as the second, independent SAML identity
# provider of the tests (tests/support/pysaml2_idp.py): target/pysaml2-venv with pysaml2 from
# PyPI, at the version below. Builds the virtualenv only when it is missing or holds another
# version of pysaml2, so running it again is quick. Can be sourced (defines pysaml2_setup) or run.
#
# Exports IDSYNC_PYSAML2_PYTHON: the virtualenv's python, which the tests run the script with.
# pysaml2 signs through the xmlsec1 command (Debian package xmlsec1, which scripts/setup.sh
# installs).
set -euo pipefail

IDSYNC_PYSAML2_VERSION=7.5.5

pysaml2_setup() {
  local root venv
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$root/target/pysaml2-venv"

  if ! pysaml2_venv_ready "$venv"; then
    mkdir -p "$root/target"
    # Two setups at once (the tests and a benchmark, say) would delete each other's half-built
    # virtualenv: the second waits, then finds the first one's result.
    (
      exec 9>"$root/target/pysaml2-venv.lock"
      flock 9
      pysaml2_venv_ready "$venv" && exit 0
      echo "pysaml2-setup: virtualenv with pysaml2 $IDSYNC_PYSAML2_VERSION in $venv"
      rm -rf "$venv"
      if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian's own python3 keeps venv in a separate package; scripts/setup.sh, when it is
        # the one sourcing this file, can install it.
        rm -rf "$venv"
        if declare -F install_packages >/dev/null; then
          install_packages python3-venv || exit 1
        fi
        python3 -m venv "$venv" || {
          echo "pysaml2-setup: python3 -m venv failed; install the Debian package python3-venv" >&2
          rm -rf "$venv"
          exit 1
        }
      fi
      "$venv/bin/python" -m pip install --quiet "pysaml2==$IDSYNC_PYSAML2_VERSION" || {
        echo "pysaml2-setup: pip could not install pysaml2 $IDSYNC_PYSAML2_VERSION (it needs PyPI)" >&2
        rm -rf "$venv"
        exit 1
      }
      pysaml2_venv_ready "$venv" || {
        echo "pysaml2-setup: pysaml2 $IDSYNC_PYSAML2_VERSION did not install into $venv" >&2
        exit 1
      }
    ) || return 1
  fi

  if ! command -v xmlsec1 >/dev/null 2>&1; then
    echo "pysaml2-setup: pysaml2 signs with the xmlsec1 command: install the Debian package xmlsec1" >&2
    return 1
  fi
  export IDSYNC_PYSAML2_PYTHON="$venv/bin/python"
}

# True when the virtualenv's python runs and reports the pinned pysaml2 version.
pysaml2_venv_ready() {
  [ -x "$1/bin/python" ] &&
    [ "$("$1/bin/python" -c 'from importlib.metadata import version; print(version("pysaml2"))' 2>/dev/null)" = "$IDSYNC_PYSAML2_VERSION" ]
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  pysaml2_setup
  echo "IDSYNC_PYSAML2_PYTHON=$IDSYNC_PYSAML2_PYTHON"
fi
