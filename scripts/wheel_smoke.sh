#!/usr/bin/env bash
# Builds tac_jax's wheel, installs it into a fresh virtual environment outside the
# checkout, and from a folder outside the checkout trains the smoke config, evaluates
# the run and scores an array file with the installed `tac-jax`. Fails on the first
# error; prints how long each stage took. Needs Fashion-MNIST (see scripts/setup.sh).
#   bash scripts/wheel_smoke.sh          (PYTHON=python3.11 to pick the interpreter)
#   KEEP=1 bash scripts/wheel_smoke.sh   keeps the temporary folder to look at
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
pip_flags=(--quiet --disable-pip-version-check)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tac_jax_wheel_smoke.XXXXXX")
if [[ -z "${KEEP:-}" ]]; then
  trap 'rm -rf "$tmp"' EXIT
fi
start=$SECONDS
stage() { echo "wheel_smoke: [$((SECONDS - start)) s] $*"; }
fail() { echo "wheel_smoke: FAILED: $*" >&2; exit 1; }

# Build from a copy of the files git tracks or would track: a stale build/ folder in the
# checkout must not leak modules that no longer exist into the wheel.
stage "copying the source into $tmp/src"
mkdir -p "$tmp/src" "$tmp/wheel" "$tmp/work"
(
  cd "$root"
  git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -f $f ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -
) | tar -xf - -C "$tmp/src"

stage "building the wheel"
"$python" -m pip wheel "${pip_flags[@]}" --no-deps -w "$tmp/wheel" "$tmp/src"
wheel=$(ls "$tmp/wheel"/tac_jax-*.whl)
"$python" -m zipfile -l "$wheel" >"$tmp/wheel/contents.txt"
for member in tac_jax/configs/smoke.py tac_jax/evaluate/engine/scoring.py \
  tac_jax/evaluate/ood/suites.py tac_jax/evaluate/reporting/report.py; do
  grep -q "^$member " "$tmp/wheel/contents.txt" || fail "$member is not in the wheel"
done

stage "installing $(basename "$wheel") into a fresh virtual environment"
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install "${pip_flags[@]}" -c "$root/scripts/constraints.txt" "$wheel"
"$tmp/venv/bin/python" -m pip check

cd "$tmp/work"
bin=$tmp/venv/bin
where=$("$bin/python" -c "import tac_jax; print(tac_jax.__file__)")
[[ $where == "$tmp/venv/"* ]] || fail "tac_jax imported from $where, not the installed wheel"
# Every config ships by name, including those that import one another (tac-jax demo's).
"$bin/python" -c "import tac_jax; [tac_jax.load_config(n) for n in tac_jax.config_names()]; \
tac_jax.load_config('demo:base'); tac_jax.load_config('fmnist_methods:ensemble')"

stage "tac-jax train --config smoke"
"$bin/tac-jax" train --config smoke --workdir run --config.mode=scratch --config.steps=20
[[ -f run/final_metrics.json ]] || fail "train wrote no run/final_metrics.json"

stage "tac-jax evaluate"
"$bin/tac-jax" evaluate --workdir run --num-ood 50 --bootstrap 0 --severities 1 \
  --epsilons '' --attack-size 50 >evaluate.log || { tail -20 evaluate.log; fail "evaluate"; }
for file in report/report.md report/metrics.json; do
  [[ -f run/$file ]] || fail "evaluate wrote no run/$file"
done

stage "tac-jax score"
"$bin/python" -c "import numpy as np; np.save('images.npy', np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8))"
"$bin/tac-jax" score --workdir run --input images.npy --output scores.npz
"$bin/python" - <<'EOF'
import numpy as np

scores = np.load("scores.npz")
assert {"prediction", "tac", "msp"} <= set(scores.files), scores.files
assert all(scores[name].shape == (8,) for name in scores.files)
EOF

stage "passed in $((SECONDS - start)) s"
