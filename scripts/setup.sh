#!/usr/bin/env bash
# Creates .venv and installs lagnh-pipeline with its dev tools (idempotent: reinstalls only when
# pyproject.toml changed). As root it also installs Debian's dataset-fashion-mnist (the offline
# demo's source) when missing; elsewhere the demo downloads Fashion-MNIST itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "setup: could not install dataset-fashion-mnist; the demo will download Fashion-MNIST" >&2
fi
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
