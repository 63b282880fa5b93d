#!/usr/bin/env bash
# Makes the Python virtualenvs in which the tests run independent tools from PyPI, each at a
# pinned version:
#   target/pysaml2-venv        pysaml2, the second SAML identity provider
#                              (tests/support/pysaml2_idp.py); exports IDSYNC_PYSAML2_PYTHON
#   target/scim-checkers-venv  scim2-tester and scim-sanity, the SCIM conformance checkers run
#                              against `idsync serve` (tests/scim_conformance.rs); exports
#                              IDSYNC_SCIM_CHECKERS_PYTHON
# A virtualenv is built only when it is missing or holds other versions, so running this again
# is quick. Can be sourced (defines python_tools_setup) or run.
set -euo pipefail

IDSYNC_PYSAML2_REQUIREMENTS="pysaml2==7.5.5"
IDSYNC_SCIM_CHECKERS_REQUIREMENTS="scim2-tester[httpx2]==0.5.2 scim-sanity==0.7.4"

python_tools_setup() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  python_venv "$root" pysaml2-venv "$IDSYNC_PYSAML2_REQUIREMENTS" || return 1
  python_venv "$root" scim-checkers-venv "$IDSYNC_SCIM_CHECKERS_REQUIREMENTS" || return 1
  if ! command -v xmlsec1 >/dev/null 2>&1; then
    echo "python-tools-setup: pysaml2 signs with the xmlsec1 command: install the Debian package xmlsec1" >&2
    return 1
  fi
  export IDSYNC_PYSAML2_PYTHON="$root/target/pysaml2-venv/bin/python"
  export IDSYNC_SCIM_CHECKERS_PYTHON="$root/target/scim-checkers-venv/bin/python"
}

# python_venv ROOT NAME "REQUIREMENT…": target/NAME with exactly these requirements installed.
# What was installed is recorded in the virtualenv (idsync-requirements); another list, or a
# virtualenv whose python no longer runs, is built again.
python_venv() {
  local root="$1" name="$2" requirements="$3" venv
  venv="$root/target/$name"
  python_venv_ready "$venv" "$requirements" && return 0
  mkdir -p "$root/target"
  # Two setups at once (the tests and a benchmark, say) would delete each other's half-built
  # virtualenv: the second waits, then finds the first one's result.
  (
    exec 9>"$venv.lock"
    flock 9
    python_venv_ready "$venv" "$requirements" && exit 0
    echo "python-tools-setup: virtualenv $venv with $requirements (from PyPI, about a minute)"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      # Debian's own python3 keeps venv in a separate package; scripts/setup.sh, when it is the
      # one sourcing this file, can install it.
      rm -rf "$venv"
      if declare -F install_packages >/dev/null; then
        install_packages python3-venv || exit 1
      fi
      python3 -m venv "$venv" || {
        echo "python-tools-setup: python3 -m venv failed; install the Debian package python3-venv" >&2
        rm -rf "$venv"
        exit 1
      }
    fi
    # shellcheck disable=SC2086 # the requirements are separate words
    "$venv/bin/python" -m pip install --quiet $requirements || {
      echo "python-tools-setup: pip could not install $requirements (it needs PyPI)" >&2
      rm -rf "$venv"
      exit 1
    }
    echo "$requirements" >"$venv/idsync-requirements"
  ) || return 1
}

python_venv_ready() {
  [ -x "$1/bin/python" ] && "$1/bin/python" -c 'pass' 2>/dev/null &&
    [ "$(cat "$1/idsync-requirements" 2>/dev/null)" = "$2" ]
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  python_tools_setup
  echo "IDSYNC_PYSAML2_PYTHON=$IDSYNC_PYSAML2_PYTHON"
  echo "IDSYNC_SCIM_CHECKERS_PYTHON=$IDSYNC_SCIM_CHECKERS_PYTHON"
fi
