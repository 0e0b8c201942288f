"""`aiida-polyhydride demo` (what `make demo` runs) on the embedded default: SQLite + ZeroMQ daemon, real pw.x,
real Allegro committees, MD with the committee: active learning on Ca-H, then surface melting with its committee.

The demo runs as a user runs it (a separate process, config directory and daemon), started by the session fixture
``demo_in_background`` before the first test."""

from __future__ import annotations

import re
from pathlib import Path

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def test_demo_runs_active_learning_then_surface_melting(demo_in_background):
    # started by conftest before the first test of the session (it shares nothing with them)
    user_shell, output = demo_in_background.shell, demo_in_background.output
    result = demo_in_background.result(timeout=2400)
    stdout = result.stdout
    assert result.returncode == 0, stdout + result.stderr
    assert 'storage core.sqlite_dos, broker core.zeromq' in stdout
    loop_pk = int(re.search(r'submitted ActiveLearningWorkChain<(\d+)>', stdout).group(1))
    melting_pk = int(re.search(r'submitted SurfaceMeltingWorkChain<(\d+)>', stdout).group(1))
    facts = user_shell.python_json(
        f"""
import json
from aiida import load_profile, orm
load_profile('polyhydride')
loop, melting = orm.load_node({loop_pk}), orm.load_node({melting_pk})
committees = sorted((c for c in loop.called if c.process_label == 'CommitteeWorkChain'), key=lambda c: c.ctime)
print(json.dumps({{
    'loop_exit': loop.exit_status,
    'history': loop.outputs.history['iterations'],
    'n_seeds': len(loop.inputs.initial_structures),
    'warm_start': [
        sorted(m.uuid for m in c.inputs.parent_models.values()) if 'parent_models' in c.inputs else []
        for c in committees
    ],
    'first_models': sorted(m.uuid for m in committees[0].outputs.models.values()),
    'loop_models': sorted(m.uuid for m in loop.outputs.models.values()),
    'melting_ok': melting.is_finished_ok,
    'melting_models': sorted(m.uuid for m in melting.inputs.models.values()),
    'summary': melting.outputs.summary.get_dict(),
}}))
"""
    )
    # the loop: two iterations, the dataset grew by the labels of iteration 1, the second committee was warm-started
    assert facts['loop_exit'] in (0, 410), stdout  # 410: not converged after max_iterations, outputs given
    first, second = facts['history']
    assert first['labels_added'] >= 1
    assert second['n_training'] + second['n_validation'] > first['n_training'] + first['n_validation']
    assert first['n_training'] + first['n_validation'] <= facts['n_seeds']  # seeds pw.x failed on are dropped
    assert facts['warm_start'] == [[], facts['first_models']]
    rows = re.findall(r'^\s+([12])\s+(\d+)\s+(\d+)\s', stdout, re.MULTILINE)
    assert [(int(n), int(t), int(v)) for n, t, v in rows] == [
        (r['iteration'], r['n_training'], r['n_validation']) for r in facts['history']
    ]
    # surface melting ran with the loop's final committee; the printed numbers are the summary's
    assert facts['melting_ok'], stdout
    assert facts['melting_models'] == facts['loop_models']
    summary = facts['summary']
    assert f'{summary["initial_h_per_metal"]:.3f} -> {summary["final_h_per_metal"]:.3f}' in stdout
    assert f'phase           {summary["phase"]}' in stdout
    assert f'max {summary["max_molten_depth_A"]:.1f} A' in stdout
    # the plots' paths are printed and hold PNG files: the loop's two and surface melting's three
    paths = [Path(line.strip()) for line in stdout.splitlines() if line.strip().endswith('.png')]
    assert sorted(path.parent.name for path in paths) == ['active_learning'] * 2 + ['surface_melting'] * 3
    for path in paths:
        assert path.is_relative_to(output) and path.read_bytes()[:8] == PNG_MAGIC
    shown = user_shell.verdi('-p', 'polyhydride', 'process', 'show', str(melting_pk))
    assert 'Finished [0]' in shown.stdout
