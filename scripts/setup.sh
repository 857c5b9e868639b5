#!/usr/bin/env bash
# Sets up .venv/ at the repository root with tac_jax installed (editable).
#   bash scripts/setup.sh          the package, for `tac-jax` commands
#   bash scripts/setup.sh --test   plus the test tools and the TFDS extra
# Also installs Fashion-MNIST from Debian (package dataset-fashion-mnist) when it is
# missing and we are root; otherwise it says how to get it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
extras=""
if [[ "${1:-}" == "--test" ]]; then
  extras="[test,tfds]"
fi

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt -e ".${extras}"

# The text corpus of the tests: Debian's manual pages in six languages (about 20 MB).
manpages="manpages manpages-dev manpages-de manpages-de-dev manpages-fr manpages-fr-dev
  manpages-es manpages-es-dev manpages-pl manpages-pl-dev manpages-ru manpages-ru-dev"
if [[ -n "$extras" && ! -d /usr/share/man/ru/man3 ]]; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's manual pages (the text corpus)" >&2
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $manpages >/dev/null
  else
    echo "setup: the text tests need Debian's manual pages. As root run" >&2
    echo "  apt-get install -y" $manpages >&2
  fi
fi

fmnist=${TAC_JAX_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [[ ! -f "$fmnist/train-images-idx3-ubyte.gz" && ! -f "$fmnist/train-images-idx3-ubyte" ]]; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: Fashion-MNIST is missing from $fmnist. As root run" >&2
    echo "  apt-get update && apt-get install -y dataset-fashion-mnist" >&2
    echo "or point TAC_JAX_FMNIST_DIR at a folder with the four IDX files." >&2
  fi
fi
