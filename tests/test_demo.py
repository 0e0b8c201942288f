"""`aiida-polyhydride demo` (what `make demo` runs) on the embedded default: SQLite + ZeroMQ daemon, real pw.x."""

from __future__ import annotations

import re


def test_demo_labels_cah4_through_the_embedded_daemon(user_shell):
    result = user_shell.cli('demo', '--timeout', '600')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'storage core.sqlite_dos, broker core.zeromq' in result.stdout
    pressure = float(re.search(r'pressure\s+(-?[\d.]+) GPa', result.stdout).group(1))
    assert 10.0 < pressure < 80.0  # the CaH4 prototype is a ~40 GPa cell
    pk = re.search(r'PwBaseWorkChain<(\d+)>', result.stdout).group(1)
    shown = user_shell.verdi('-p', 'polyhydride', 'process', 'show', pk)
    assert 'Finished [0]' in shown.stdout
    assert 'PwCalculation' in shown.stdout
