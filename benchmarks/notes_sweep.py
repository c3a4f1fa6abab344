"""Every optimization x every shared trace (and traces/v100): no prediction within 0.5% of the
replay without a note saying why. The suite runs a representative subset of tests/test_notes.py;
this runs all of it (~20 s on one core):  python3 benchmarks/notes_sweep.py"""
import os
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":
    os.environ["DAYDREAM_FULL_SWEEP"] = "1"
    repo = Path(__file__).resolve().parents[1]
    sys.exit(pytest.main(["-q", "-p", "no:xdist", str(repo / "tests" / "test_notes.py")]))
