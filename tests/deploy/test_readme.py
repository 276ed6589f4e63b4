"""The README stays true: its links resolve and every command it shows exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_every_relative_link_resolves():
    links = [m.group(1) for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)]
    assert links
    assert [link for link in links if not link.startswith("http") and not (REPO / link).exists()] == []


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
    import subprocess
    import sys

    scripts = (REPO / "systemd/install-lib.sh").read_text() + (REPO / "systemd/install-server.sh").read_text()
    for option in ("--root", "--no-venv", "--broker-host"):
        assert option in README and f"{option})" in scripts, option  # a `case` branch parses it
    demo_help = subprocess.run([sys.executable, "-m", "device.demo", "--help"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout
    for option in ("--nights", "--hours", "--speed", "--dir"):
        assert option in README and option in demo_help, option
