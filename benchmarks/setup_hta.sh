#!/usr/bin/env bash
# Creates benchmarks/.venv-hta, a virtual environment kept apart from daydream's own, holding
# Meta's Holistic Trace Analysis (PyPI: HolisticTraceAnalysis) for bench_vs_hta.py.
# HTA needs no torch. HTA 0.5.0 (May 2025) predates pandas 3, whose DataFrame.drop rejects the
# `axis=1, columns=...` calls in HTA's critical-path code, so pandas and numpy are pinned to the
# releases current when HTA 0.5.0 came out.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-hta"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "HolisticTraceAnalysis==0.5.0" "pandas==2.2.3" "numpy<2.3"
# Guard: a torch wheel (and with it several GB of CUDA libraries) must never come in through HTA.
if "$venv/bin/python" -m pip show torch >/dev/null 2>&1; then
    echo "setup_hta.sh: torch was pulled into $venv; remove it and report the dependency" >&2
    exit 1
fi
"$venv/bin/python" -c "import hta, hta.trace_analysis; print('HTA ready:', hta.__file__)"
