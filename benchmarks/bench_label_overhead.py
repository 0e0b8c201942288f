"""Orchestration overhead of LabelWorkChain: wall time of labelling 20 tiny frames / sum of the pw.x wall times.

Runs in the embedded profile made by `aiida-polyhydride setup` (its daemon is started if needed). Sequential
(max_concurrent=1) gives the overhead proper; max_concurrent=2 shows what the two cores of this machine gain.
Results: benchmarks/results/label_overhead.json.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from _machine import machine_description

N_FRAMES = 20
RESULTS = Path(__file__).parent / 'results' / 'label_overhead.json'


def tiny_frames(n: int):
    from ase.build import bulk

    from aiida_polyhydride.structures import rattle

    return [rattle(bulk('CaH', 'rocksalt', a=4.4), stdev=0.05, seed=seed) for seed in range(n)]


def run(max_concurrent: int) -> dict:
    from aiida import orm
    from aiida.engine import submit

    from aiida_polyhydride.workflows.label import LabelWorkChain

    builder = LabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'),
        [orm.StructureData(ase=frame) for frame in tiny_frames(N_FRAMES)],
        protocol='fast',
        overrides={'max_concurrent': max_concurrent, 'kpoints_distance': 0.6},
    )
    builder.metadata.label = f'benchmark label overhead (max_concurrent={max_concurrent})'
    node = submit(builder)
    while not node.is_terminated:
        time.sleep(1)
    if not node.is_finished_ok:
        raise RuntimeError(f'LabelWorkChain<{node.pk}> failed: {node.exit_message}')
    calculations = [descendant for descendant in node.called_descendants if descendant.process_label == 'PwCalculation']
    pw_wall = sum(calculation.outputs.output_parameters['wall_time_seconds'] for calculation in calculations)
    wall = (node.mtime - node.ctime).total_seconds()
    return {
        'max_concurrent': max_concurrent,
        'label_workchain_pk': node.pk,
        'n_frames': N_FRAMES,
        'n_pw_calculations': len(calculations),
        'workchain_wall_s': round(wall, 2),
        'sum_pw_wall_s': round(pw_wall, 2),
        'ratio_wall_over_sum_pw': round(wall / pw_wall, 3),
        'overhead_per_frame_s': round((wall - pw_wall / max_concurrent) / N_FRAMES, 2),
    }


def main() -> None:
    from aiida import load_profile
    from aiida.engine.daemon.client import get_daemon_client

    profile = load_profile('polyhydride')
    client = get_daemon_client()
    if not client.is_daemon_running:
        client.start_daemon()
    runs = [run(1), run(2)]
    result = {
        'benchmark': 'label_overhead',
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'machine': machine_description(),
        'profile': f'{profile.name} ({profile.storage_backend}, {profile.process_control_backend})',
        'frames': '2-atom rocksalt CaH, rattled 0.05 A; protocol fast (30/240 Ry), k spacing 0.6 1/A',
        'runs': runs,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
