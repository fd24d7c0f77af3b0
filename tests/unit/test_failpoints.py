"""Failpoints are honest: every declared point is hit by production code, and arming one kills at it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.metering.failpoints import POINTS, Failpoints

ROOT = Path(__file__).resolve().parents[2]


def test_every_declared_point_is_hit_somewhere_in_the_worker():
    code = "".join(path.read_text() for folder in ("pipeline", "agents") for path in (ROOT / folder).rglob("*.py"))
    hit = set(re.findall(r'\.hit\("([a-z_]+)"\)', code))
    assert hit == set(POINTS)


def test_an_unknown_point_is_refused():
    with pytest.raises(ValueError, match="unknown point"):
        Failpoints("after_lunch=1")


def test_an_armed_point_kills_the_process_with_sigkill():
    done = subprocess.run([sys.executable, "-c", "from pipeline.metering.failpoints import Failpoints\n"
                           "Failpoints('after_ack=1').hit('after_ack')\nprint('survived')"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9 and "survived" not in done.stdout
    quiet = subprocess.run([sys.executable, "-c", "from pipeline.metering.failpoints import Failpoints\n"
                            "Failpoints('after_ack=0').hit('after_ack')\nprint('survived')"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert quiet.stdout.strip() == "survived"
