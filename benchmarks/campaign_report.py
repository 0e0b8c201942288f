"""Time to potential and labelling overhead of a real active-learning campaign, read from its profile.

    verdi -p cah-campaign run benchmarks/campaign_report.py -- RUN_PK [RUN_PK ...]   # a run and its continuations

Not a ``bench_*.py`` (``make bench`` cannot make a campaign): it reads what the campaign's processes recorded and
writes benchmarks/results/campaign.json. Per run and summed over the runs given:

- DFT core-hours: pw.x wall time (its own report) x MPI ranks, of the calculations that ran (cache hits apart);
- training and MD hours: job wall time (CalcJob creation to last change, so queue and retrieval included);
- labels per iteration and the lowest accurate ratio per iteration (the run's ``history`` output, where present);
- labelling overhead at the campaign's frame sizes: per frame, the PwBaseWorkChain's wall time minus pw.x's own,
  summed over frames and divided by the summed pw.x time (target <= 5 %); and the fraction of ``max_concurrent``
  slots left idle over each LabelWorkChain's life (the tail of the last frames included).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from _machine import machine_description

RESULTS = Path(__file__).parent / 'results' / 'campaign.json'


def _wall(node) -> float:
    end = node.mtime if node.is_terminated else datetime.now(timezone.utc)
    return (end - node.ctime).total_seconds()


def _pw_wall(calculation) -> float | None:
    if 'output_parameters' not in calculation.outputs:
        return None
    return calculation.outputs.output_parameters.get('wall_time_seconds')


def _is_cached(node) -> bool:
    return node.base.caching.is_created_from_cache


def labelling(label_workchain) -> dict:
    """Overhead of one LabelWorkChain: per-frame AiiDA time beyond pw.x, and idle slots."""
    frames = [child for child in label_workchain.called if child.process_label == 'PwBaseWorkChain']
    pw_total, overhead_total, n_measured, busy = 0.0, 0.0, 0, 0.0
    for frame in frames:
        busy += _wall(frame)
        calculations = [c for c in frame.called if c.process_label == 'PwCalculation' and not _is_cached(c)]
        walls = [_pw_wall(c) for c in calculations]
        if not calculations or any(w is None for w in walls) or not frame.is_finished_ok:
            continue
        pw_total += sum(walls)
        overhead_total += _wall(frame) - sum(walls)
        n_measured += 1
    slots = label_workchain.inputs.max_concurrent.value
    return {
        'pk': label_workchain.pk,
        'n_frames': len(frames),
        'n_measured': n_measured,
        'max_concurrent': slots,
        'sum_pw_wall_s': round(pw_total, 1),
        'overhead_fraction': round(overhead_total / pw_total, 4) if pw_total else None,
        'idle_slot_fraction': round(1 - busy / (slots * _wall(label_workchain)), 4),
    }


def report(run) -> dict:
    descendants = run.called_descendants
    pw = [n for n in descendants if n.process_label == 'PwCalculation']
    ran = [n for n in pw if not _is_cached(n) and _pw_wall(n) is not None]
    ranks = [n.get_option('resources').get('num_mpiprocs_per_machine', 1) for n in ran]
    dft_core_hours = sum(_pw_wall(n) * r for n, r in zip(ran, ranks, strict=True)) / 3600
    train = [n for n in descendants if n.process_label == 'AllegroTrainCalculation']
    md = [n for n in descendants if n.process_label == 'MDCalculation']
    history = run.outputs.history.get_dict()['iterations'] if 'history' in run.outputs else []
    iterations = [
        {
            'iteration': record['iteration'],
            'n_training': record.get('n_training'),
            'labels_added': record.get('labels_added'),
            'validation_forces_rmse_meV_per_A': record.get('validation_forces_rmse'),
            'lowest_accurate_ratio': min((v['accurate'] for v in record.get('ratios', {}).values()), default=None),
        }
        for record in history
    ]
    labels = [n for n in run.called if n.process_label == 'LabelWorkChain']
    return {
        'pk': run.pk,
        'uuid': run.uuid,
        'state': run.process_state.value if run.process_state else None,
        'exit_status': run.exit_status,
        'wall_hours': round(_wall(run) / 3600, 2),
        'n_pw_calculations': len(pw),
        'n_pw_from_cache': sum(_is_cached(n) for n in pw),
        'dft_core_hours': round(dft_core_hours, 2),
        'training_hours': round(sum(_wall(n) for n in train) / 3600, 2),
        'md_hours': round(sum(_wall(n) for n in md) / 3600, 2),
        'iterations': iterations,
        'labelling': [labelling(n) for n in labels],
    }


def main(pks: list[str]) -> None:
    from aiida import orm
    from aiida.manage import get_manager

    runs = [report(orm.load_node(int(pk))) for pk in pks]
    measured = [entry for run in runs for entry in run['labelling'] if entry['overhead_fraction'] is not None]
    pw_sum = sum(entry['sum_pw_wall_s'] for entry in measured)
    weighted = sum(entry['overhead_fraction'] * entry['sum_pw_wall_s'] for entry in measured)
    result = {
        'benchmark': 'campaign',
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'machine': machine_description(),
        'profile': get_manager().get_profile().name,
        'runs': runs,
        'total': {
            'wall_hours': round(sum(run['wall_hours'] for run in runs), 2),
            'dft_core_hours': round(sum(run['dft_core_hours'] for run in runs), 2),
            'training_hours': round(sum(run['training_hours'] for run in runs), 2),
            'md_hours': round(sum(run['md_hours'] for run in runs), 2),
            'labelling_overhead_fraction': round(weighted / pw_sum, 4) if pw_sum else None,
        },
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result['total'], indent=2))


if __name__ == '__main__':
    main([argument for argument in sys.argv[1:] if argument != '--'])
