"""`aiida-polyhydride demo` (what `make demo` runs) on the embedded default: SQLite + ZeroMQ daemon, real pw.x."""

from __future__ import annotations

import re


def test_demo_labels_cah4_through_the_embedded_daemon(user_shell):
    result = user_shell.cli('demo', '--timeout', '600')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'storage core.sqlite_dos, broker core.zeromq' in result.stdout
    pressure = float(re.search(r'frame 0 .* P (-?[\d.]+) GPa', result.stdout).group(1))
    assert 10.0 < pressure < 80.0  # the CaH4 prototype is a ~40 GPa cell
    hydrogen = float(re.search(r'isolated atoms .*H (-?[\d.]+) eV', result.stdout).group(1))
    assert abs(hydrogen + 13.6) < 0.1
    pk = re.search(r'LabelWorkChain<(\d+)>', result.stdout).group(1)
    shown = user_shell.verdi('-p', 'polyhydride', 'process', 'show', pk)
    assert 'Finished [0]' in shown.stdout
    assert shown.stdout.count('PwBaseWorkChain') == 4  # one per frame
    assert 'TrainingSetData' in shown.stdout
    assert len(re.findall(r'member_\d +AllegroPotentialData<\d+> seed \d', result.stdout)) == 2
    sigma_f = float(re.search(r'mean sigma_F (\d+\.\d+) eV/A', result.stdout).group(1))
    assert sigma_f > 0
