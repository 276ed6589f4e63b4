"""A fresh clone passes the README's test command from nothing.

`git clone` the committed tree into a temporary folder and run `make test` there: a new `.venv`,
`pip install -e '.[dev]'` (pip's download cache may be warm, the venv is not) and the whole suite.
It proves that nothing the suite needs lives only in this working tree: an uncommitted file, a
package installed by hand, a path outside the repository.

The inner run sees RLSMON_FRESH_CLONE=1 and skips this test, or it would clone itself forever.
It takes several minutes (a new venv plus the suite), so it is marked slow; CI runs it, since CI
runs the whole suite, and the suite itself stays well under CI's 90 minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INNER = "RLSMON_FRESH_CLONE"
TIMEOUT_S = 45 * 60


def readme_test_command() -> list[str]:
    """The test command from the README's first code block (`make test   # …`)."""
    text = (REPO / "README.md").read_text()
    block = text.split("```", 2)[1]
    for line in block.splitlines():
        command = line.split("#", 1)[0].strip()
        if command.endswith(" test") or command == "make test":
            return command.split()
    raise AssertionError("the README's first code block has no test command")


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.skipif(os.environ.get(INNER) == "1", reason="inside the fresh clone: do not clone again")
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_fresh_clone_passes_the_readme_test_command(tmp_path):
    clone = tmp_path / "rlsmon"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()

    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env[INNER] = "1"
    # Run from the clone with the system python, as a newcomer would; nothing from this venv leaks in.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if str(REPO) not in p)
    result = subprocess.run(
        readme_test_command(), cwd=clone, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )

    assert result.returncode == 0, (result.stdout[-6000:] + "\n" + result.stderr[-4000:])
    assert (clone / ".venv/bin/rlsmon-device").exists()
    assert " passed" in result.stdout
