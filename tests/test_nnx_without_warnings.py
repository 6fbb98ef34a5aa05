"""Every fixture's NNX output runs with warnings as errors: no deprecated Flax API is ever written.

One subprocess runs them all (importing jax once); each file is executed as a script would be,
module-level initialisation and training steps included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

RUNNER = """
import json, runpy, sys, traceback, warnings
warnings.simplefilter("error")
failures = {}
for path in sys.argv[1:]:
    try:
        runpy.run_path(path)
    except BaseException:
        failures[path] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""


def test_every_nnx_fixture_runs_with_warnings_as_errors(tmp_path: Path):
    files = sorted(str(p) for p in FIXTURES.glob("*/*/nnx.py"))
    assert len(files) >= 20
    # run from an empty folder, so a fixture's `haiku.py` never shadows the haiku package
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER, *files], capture_output=True, text=True, cwd=tmp_path, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n\n".join(f"{path}:\n{error}" for path, error in failures.items())
