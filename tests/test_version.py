"""``shoal.__version__`` is a constant (no package metadata read at import) that agrees
with the installed distribution's."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import shoal
from shoal.comm.handshake import SHOAL_VERSION


def test_version_costs_no_metadata_lookup() -> None:
    code = (
        "import sys, shoal, shoal.comm\n"
        "assert isinstance(shoal.__version__, str) and shoal.__version__\n"
        "assert 'importlib.metadata' not in sys.modules, 'the version was looked up'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_version_is_the_installed_distributions_and_the_handshakes() -> None:
    assert shoal.__version__ == importlib.metadata.version("shoal") == SHOAL_VERSION
