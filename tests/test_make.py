"""`make test` and .ci/run run the same test command with the same torch pins."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _recipe(makefile: str, target: str) -> list:
    lines = makefile.splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(rf"^{target}\s*:", l))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        body.append(line.strip())
    return body


def test_make_test_runs_the_ci_test_command():
    makefile = (REPO / "Makefile").read_text()
    ci = [l.strip() for l in (REPO / ".ci" / "run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    make_cmd = shlex.split(_recipe(makefile, "test")[-1])
    ci_cmd = shlex.split(ci[-1])
    assert Path(make_cmd[0]).name == Path(ci_cmd[0]).name == "python"
    assert make_cmd[1:] == ci_cmd[1:], (make_cmd, ci_cmd)
    pins = re.search(r"^TORCH \?= (.+)$", makefile, re.M).group(1).split()
    assert all(pin in " ".join(ci) for pin in pins), (pins, ci)
    assert '-e ".[test]"' in makefile and '-e ".[test]"' in " ".join(ci)
