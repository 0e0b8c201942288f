"""How every benchmark names the machine it ran on: results from different CPUs differ by tens of percent (the MD
benchmark read 5.1k atom-steps/s on one 2-core machine and 7.1k on another), so the CPU model is part of a result."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """'<host> (<CPU model>, <machine>), <n> cores'."""
    return f'{platform.node()} ({cpu_model()}, {platform.machine()}), {os.cpu_count()} cores'
