#!/usr/bin/env bash
# The project as a user who installs the wheel gets it: build the wheel, install it into a
# fresh virtualenv outside the checkout, and from an empty directory run a smoke run and a
# two-trial sweep. Shows that conf/ and sweeps/ ship inside the package (no checkout needed).
#   bash .ci/wheel_smoke.sh            (from anywhere; about a minute and a half)
# Settings: BENCH_WHEEL_DIR (a temporary folder, removed at the end unless set),
# TORCH_SPEC (torch==2.13.0: pip reuses the wheel it already has in its cache),
# BENCH_WHEEL_DEPS_FROM (a site-packages folder holding the dependencies: only the wheel is
# installed; .ci/run passes its own, which it installed from the same pyproject).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WHEEL_DIR:-$(mktemp -d /tmp/bench-wheel-XXXXXX)}"
[ -n "${BENCH_WHEEL_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1
python="${PYTHON:-python3}"

echo "wheel smoke: building in $work" >&2
mkdir -p "$work/dist" "$work/run" "$work/src"
# Built from a copy of the working tree (tracked and untracked, not ignored files), so the
# build leaves nothing in the checkout.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/src"
"$python" -m pip wheel -q --no-deps -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/bench-*.whl)"
"$python" -m venv "$work/venv"
# shellcheck source=/dev/null
. "$work/venv/bin/activate"
if [ -n "${BENCH_WHEEL_DEPS_FROM:-}" ]; then
  # The dependencies from another environment's site-packages (CI's, installed from the same
  # pyproject a moment ago), appended to sys.path behind this venv's own: the wheel's bench
  # is found first, and that environment's editable bench is not (its .pth is not read).
  site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$BENCH_WHEEL_DEPS_FROM" > "$site/bench-smoke-deps.pth"
  pip install -q --no-deps "$wheel"
else
  pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  pip install -q "$wheel"
fi

cd "$work/run"   # empty: nothing of the checkout is reachable from here
export BENCH_DATA_DIR="$work/data"
unset MLFLOW_TRACKING_URI BENCH_OPTUNA_STORAGE
python - <<'EOF'
import bench, importlib.resources as r
assert "site-packages" in bench.__file__, f"bench imported from {bench.__file__}, not the wheel"
assert (r.files("bench.conf") / "config.yaml").is_file()
assert (r.files("bench.sweeps") / "recurrent.yaml").is_file()
EOF
python -m bench dataset=synthetic trainer=smoke
python -m bench -m dataset=synthetic trainer=smoke +sweep=default \
    hydra.sweeper.n_trials=2 hydra.sweeper.study_name=wheel-smoke
python - <<'EOF'
import optuna
study = optuna.load_study(study_name="wheel-smoke", storage="sqlite:///optuna.db")
states = [t.state.name for t in study.trials]
assert states.count("COMPLETE") + states.count("PRUNED") == 2, states
print("wheel smoke: run and two-trial sweep from the installed wheel: ok")
EOF
