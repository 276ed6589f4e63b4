"""The README and the docs stay true: links resolve, commands exist, and CI runs the README's command."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("firmware_config/*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def readme_commands() -> dict[str, str]:
    """The README's opening code block, as {"demo": "make demo", "test": "make test"}."""
    block = README.split("```", 2)[1]
    commands = {}
    for line in block.splitlines()[1:]:
        command = line.split("#", 1)[0].strip()
        if command:
            commands[command.split()[-1]] = command
    return commands


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_the_readme_opens_with_the_demo_and_the_test_command():
    assert README.startswith("# rlsmon\n\n```sh\n")
    assert set(readme_commands()) == {"demo", "test"}


def test_ci_runs_the_readme_test_command_and_nothing_looser():
    ci_lines = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert ci_lines[-1] == readme_commands()["test"]
    # `make test` runs the whole suite: no marker, keyword or path filter narrows it.
    make_db = subprocess.run(["make", "-n", "-B", "test"], cwd=REPO, capture_output=True, text=True, check=True)
    pytest_lines = [line for line in make_db.stdout.splitlines() if "bin/pytest" in line]
    assert len(pytest_lines) == 1, make_db.stdout
    args = shlex.split(pytest_lines[0])[1:]
    assert not {"-m", "-k", "--deselect", "--ignore", "-x", "--lf"} & set(args), args
    assert [a for a in args if not a.startswith("-")] == [], args  # no path: testpaths, i.e. all of tests/


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_in_the_docs_resolves(doc):
    text = doc.read_text()
    broken = []
    for link in LINK.findall(text):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists() or REPO not in target.parents:
            broken.append(link)
        elif anchor and target.suffix == ".md" and anchor not in anchors(target.read_text()):
            broken.append(link)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_doc_points_outside_the_repository(doc):
    """A clone has no ../shared: the design lives in docs/architecture.md."""
    assert "../shared" not in doc.read_text()


@pytest.mark.parametrize("program", ["rlsmon-device", "rlsmon-server"])
def test_every_command_the_readme_shows_exists(program):
    from device.cli import cli as device_cli
    from server.cli import cli as server_cli

    cli = {"rlsmon-device": device_cli, "rlsmon-server": server_cli}[program]
    shown = set(re.findall(rf"(?<!-u ){program} ([a-z][a-z-]+)", README))  # not `sudo -u <user>`
    assert shown
    for command in sorted(shown):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0, f"README shows `{program} {command}`: {result.output}"


def test_the_installer_and_demo_options_the_readme_shows_exist():
    scripts = (REPO / "systemd/install-lib.sh").read_text() + (REPO / "systemd/install-server.sh").read_text()
    for option in ("--root", "--no-venv", "--broker-host"):
        assert option in README and f"{option})" in scripts, option  # a `case` branch parses it
    demo_help = subprocess.run([sys.executable, "-m", "device.demo", "--help"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout
    for option in ("--nights", "--hours", "--speed", "--dir"):
        assert option in README and option in demo_help, option
