"""Every optimization (default parameters) on every shared trace: the predicted step time or the
one-line refusal, as JSON on stdout. Used to check that a change to the graph order or the
simulator leaves every prediction identical (diff two runs), and to count predictions/refusals.

    python3 benchmarks/every_opt_matrix.py > before.json
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from pathlib import Path

from daydream.errors import DaydreamError
from daydream.opts.params import SPECS
from daydream.trace import load
from daydream.whatif import whatif

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def main(paths: list[str]) -> None:
    traces = [Path(p) for p in paths] or sorted(p for p in SHARED.glob("*/*")
                                               if p.name.endswith((".json.gz", ".tar.gz")))
    out = {}
    for path in traces:
        t0 = time.perf_counter()
        try:
            trace = load(path)
        except DaydreamError as e:
            out[str(path)] = {"load": f"refused: {e}"}
            continue
        row = {}
        for name in SPECS:
            try:
                row[name] = round(whatif(trace, [name]).predicted_ms, 6)
            except DaydreamError as e:
                row[name] = f"refused: {e}"
            except Exception as e:  # noqa: BLE001 - an internal error is what we are counting
                row[name] = f"ERROR: {type(e).__name__}: {e} @ {traceback.extract_tb(e.__traceback__)[-1]}"
        out[str(path.relative_to(SHARED)) if path.is_relative_to(SHARED) else str(path)] = row
        print(f"{path.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    numbers = {t: {o: v for o, v in r.items() if isinstance(v, float)} for t, r in out.items()}
    out["_sha256_of_predictions"] = hashlib.sha256(json.dumps(numbers, sort_keys=True).encode()).hexdigest()
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
