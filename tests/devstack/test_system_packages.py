"""`make up` and `make test` start with scripts/system-packages: on a machine where it cannot
install (not root, no password-less sudo) it stops at once and says the exact command to run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-packages"


def _bare_path(tmp_path: Path) -> str:
    """A PATH with the shell tools the script uses and nothing it checks for or installs with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "grep", "head", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    return str(bin_dir)


def test_without_the_tools_and_without_apt_it_stops_with_the_command_to_run(tmp_path: Path) -> None:
    run = subprocess.run([str(SCRIPT), "test"], env={"PATH": _bare_path(tmp_path)},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    [command] = [line for line in run.stderr.splitlines() if line.startswith("run:")]
    assert "sudo apt-get install -y --no-install-recommends" in command
    for package in ("openjdk-17-jre-headless", "maven", "python3-venv", "chromium"):
        assert package in command.split()


def test_make_up_does_not_ask_for_the_browser(tmp_path: Path) -> None:
    run = subprocess.run([str(SCRIPT), "up"], env={"PATH": _bare_path(tmp_path)},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "chromium" not in run.stderr and "maven" in run.stderr


def test_on_this_machine_everything_is_there() -> None:
    """`make test` ran it before the tests: nothing is left to install."""
    run = subprocess.run([str(SCRIPT), "test"], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stderr) == (0, "")
