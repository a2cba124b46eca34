"""``shoal.__version__`` is read on first use, not at import."""

from __future__ import annotations

import subprocess
import sys


def test_version_is_lazy_and_still_a_string() -> None:
    code = (
        "import sys, shoal\n"
        "assert 'importlib.metadata' not in sys.modules, 'imported at import time'\n"
        "assert isinstance(shoal.__version__, str) and shoal.__version__\n"
        "assert 'importlib.metadata' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
