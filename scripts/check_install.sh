#!/usr/bin/env bash
# A real `pip install .` (not editable) into a fresh venv outside the checkout, then the installed commands run
# from a folder that is not the checkout: propulsion-run --help, one offline run, a user's own config folder,
# propulsion-tables. Nothing is downloaded: the package is installed --no-deps, and the venv sees the
# dependencies of the Python that runs this script (its site-packages via a .pth file), as a user's
# environment with torch & co. already installed would.
#   PYTHON=/work/main/.venv/bin/python bash scripts/check_install.sh [WORKDIR]     (about 1-3 minutes on a CPU)
set -euo pipefail
PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/propulsion-install.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
case "$WORK" in "$REPO"*) echo "error: WORKDIR must be outside the checkout ($REPO)" >&2; exit 2;; esac
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled PYTHONPATH=

# The source as git sees it (tracked + new, not ignored): no stale build/ or egg-info from earlier builds.
rm -rf "$WORK/src" "$WORK/venv" "$WORK/elsewhere"
mkdir -p "$WORK/src" "$WORK/elsewhere"
(cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} "$WORK/src/" 2>/dev/null || true)
"$PYTHON" -m venv --without-pip "$WORK/venv"   # pip and setuptools come with the borrowed dependencies too
DEPS=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
VENV_SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$DEPS" > "$VENV_SITE/borrowed-dependencies.pth"   # torch, transformers, hydra, ...: already installed
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-build-isolation "$WORK/src"

cd "$WORK/elsewhere"   # not the checkout: nothing may be read from the repository
BIN="$WORK/venv/bin"
"$BIN/python" - "$WORK" <<'PY'
import sys
import propulsion, propulsion.resources as r
work = sys.argv[1]
for where in (propulsion.__file__, r.CONF_DIR, r.EXPERIMENTS_DIR, r.PAPER_DIR):
    assert str(where).startswith(f"{work}/venv/"), f"not the installed copy: {where}"
assert (r.CONF_DIR / "config.yaml").is_file() and (r.CONF_DIR / "hydra" / "help" / "propulsion.yaml").is_file()
print("installed:", propulsion.__file__)
PY
"$BIN/propulsion-run" --help > help.txt
grep -q "== Config groups" help.txt && grep -q "^model: .*tiny-roberta" help.txt
grep -q "propulsion-run model=tiny-roberta task=sst2 task.source=sample trainer=quick logger=none" help.txt
echo "propulsion-run --help: ok"

"$BIN/propulsion-run" model=tiny-roberta task=sst2 task.source=sample trainer=quick logger=none \
    output_root="$WORK/runs" > run.txt 2> run.err || { tail -20 run.err; exit 1; }
"$BIN/python" - "$WORK/runs" <<'PY'
import sys
from propulsion import records
frame = records.load(sys.argv[1])
assert len(frame) == 1 and frame.status[0] == "completed", frame.T
print("run: completed,", frame.method[0], frame.task[0], "main metric", frame.main_value[0])
PY

mkdir -p mine/task   # the user's own config: a task of theirs, beside the shipped ones
sed 's/^name: sst2/name: mysst2/' "$("$BIN/python" -c 'import propulsion.resources as r; print(r.CONF_DIR)')/task/sst2.yaml" \
    > mine/task/mysst2.yaml
"$BIN/propulsion-run" --config-dir mine model=tiny-roberta task=mysst2 logger=none --cfg job > composed.txt
grep -q "name: mysst2" composed.txt && echo "--config-dir: ok"
if "$BIN/propulsion-run" task=nosuchtask 2> bad.txt; then exit 1; fi
grep -q "unknown task 'nosuchtask'; valid choices: " bad.txt && echo "bad choice: one line, exit 2"

"$BIN/propulsion-tables" --runs "$WORK/runs" --out "$WORK/tables" --no-figures > tables.txt 2> tables.err
ls "$WORK/tables/tables" | grep -q . && echo "propulsion-tables: ok ($(ls "$WORK/tables/tables" | wc -l) files)"
echo "install check passed in $WORK"
