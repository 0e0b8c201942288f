"""Convergence study of the labelling protocol: cutoff, k spacing and smearing against a tighter reference.

    verdi -p PROFILE run workflows/label_convergence.py -- submit            # one LabelWorkChain per setting
    verdi -p PROFILE run workflows/label_convergence.py -- report --json out.json   # tables, once they finished

Six small frames over the training domain (structures.domain.convergence_frames: MH2 at 0 GPa, MH4 at 60 GPa,
dense H2, a liquid-like MH5 cell, a hot rattled MH4 cell, an MH2/H2 interface) are labelled by LabelWorkChain at
each setting below; ``compare_labels`` (a calcfunction) gives each setting's differences from the reference.
The runs are kept in the group ``label-convergence/<metal>``; ``submit`` skips settings already there.
"""

from __future__ import annotations

import argparse
import json

from aiida import orm
from aiida.engine import submit

from aiida_polyhydride.data.training_set import TrainingSetData
from aiida_polyhydride.structures.domain import convergence_frames
from aiida_polyhydride.workflows.convergence import compare_labels
from aiida_polyhydride.workflows.label import LabelWorkChain

#: name -> (cutoff_scale of the family's normal cutoffs, k spacing in 1/Angstrom, cold smearing degauss in Ry)
SETTINGS = {
    'reference': (4 / 3, 0.20, 0.01),
    'k0.50': (1.0, 0.50, 0.02),
    'k0.40': (1.0, 0.40, 0.02),
    'k0.30': (1.0, 0.30, 0.02),
    'k0.25': (1.0, 0.25, 0.02),
    'ecut35_k0.30': (35 / 45, 0.30, 0.02),
    'ecut60_k0.30': (4 / 3, 0.30, 0.02),
    'ecut80_k0.30': (16 / 9, 0.30, 0.02),
    'degauss0.01_k0.30': (1.0, 0.30, 0.01),
    'ecut60_k0.15_degauss0.01': (4 / 3, 0.15, 0.01),
}
#: (test, against): the one-parameter comparisons printed besides the comparison with the reference
PAIRS = {
    'cutoff at k 0.30 (against 60/480 Ry)': (('k0.30', 'ecut35_k0.30'), 'ecut60_k0.30'),
    'cutoff at k 0.30 (against 80/640 Ry)': (('k0.30', 'ecut60_k0.30'), 'ecut80_k0.30'),
    'smearing at k 0.30 (0.02 against 0.01 Ry)': (('k0.30',), 'degauss0.01_k0.30'),
    'k spacing (0.50, 0.40 against 0.30)': (('k0.50', 'k0.40'), 'k0.30'),
    'k spacing at 45/360 Ry (0.40, 0.30 against 0.25)': (('k0.40', 'k0.30'), 'k0.25'),
    'cutoff 35/280 against 45/360 Ry at k 0.30': (('ecut35_k0.30',), 'k0.30'),
    'reference k spacing (0.20 against 0.15)': (('reference',), 'ecut60_k0.15_degauss0.01'),
}


def group_for(metal: str) -> orm.Group:
    return orm.Group.collection.get_or_create(label=f'label-convergence/{metal}')[0]


def submit_settings(arguments) -> None:
    group = group_for(arguments.metal)
    done = {node.label for node in group.nodes if isinstance(node, orm.WorkflowNode)}
    frames = None
    for name in arguments.only or SETTINGS:
        if name in done:
            print(f'{name}: already in {group.label}, skipped')
            continue
        if frames is None:
            frames = TrainingSetData(convergence_frames(arguments.metal), labelled=False).store()
        scale, spacing, degauss = SETTINGS[name]
        overrides = {
            'cutoff_scale': scale,
            'kpoints_distance': spacing,
            'max_concurrent': arguments.max_concurrent,
            'clean_workdir': True,
            'pw_base': {'pw': {'parameters': {'SYSTEM': {'degauss': degauss}}}},
        }
        code = orm.load_code(arguments.code)
        builder = LabelWorkChain.get_builder_from_protocol(
            code, frames, pseudo_family=arguments.pseudo_family, protocol='moderate', overrides=overrides
        )
        builder.metadata.label = name
        node = submit(builder)
        group.add_nodes(node)
        print(f'{name}: LabelWorkChain<{node.pk}>')


def _table(result: dict) -> str:
    lines = [
        '| setting | frame | atoms | dE (meV/atom) | dE raw (meV/atom) | dF RMS (meV/A) | dF max (meV/A) | dP (GPa) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for name, entry in result['settings'].items():
        for frame, values in entry['frames'].items():
            lines.append(
                f'| {name} | {frame} | {values["n_atoms"]} | {values["energy_meV_per_atom"]:.2f} | '
                f'{values["energy_raw_meV_per_atom"]:.2f} | {values["forces_rms_meV_per_A"]:.1f} | '
                f'{values["forces_max_meV_per_A"]:.1f} | {values["pressure_GPa"]:.2f} |'
            )
        worst = entry['worst']
        lines.append(
            f'| **{name}** | worst | | **{worst["energy_meV_per_atom"]:.2f}** | {worst["energy_raw_meV_per_atom"]:.2f} '
            f'| **{worst["forces_rms_meV_per_A"]:.1f}** | {worst["forces_max_meV_per_A"]:.1f} | '
            f'**{worst["pressure_GPa"]:.2f}** |'
        )
    return '\n'.join(lines)


def report(arguments) -> None:
    group = group_for(arguments.metal)
    finished = {
        node.label: node.outputs.dataset
        for node in group.nodes
        if isinstance(node, orm.WorkflowNode) and node.is_terminated and 'dataset' in node.outputs
    }
    running = sorted(
        node.label for node in group.nodes if isinstance(node, orm.WorkflowNode) and not node.is_terminated
    )
    if running:
        print(f'still running: {", ".join(running)}')
    results = {}
    if 'reference' in finished:
        tests = {name: dataset for name, dataset in finished.items() if name != 'reference'}
        results['against the reference (60/480 Ry, k 0.20, degauss 0.01)'] = compare_labels(
            finished['reference'], **{name.replace('.', '_'): dataset for name, dataset in tests.items()}
        )
    for title, (tests, against) in PAIRS.items():
        if against in finished and all(name in finished for name in tests):
            results[title] = compare_labels(
                finished[against], **{name.replace('.', '_'): finished[name] for name in tests}
            )
    for title, node in results.items():
        print(f'\n### {title} (Dict<{node.pk}>)\n')
        print(_table(node.get_dict()))
        verdict = {name: entry['within_tolerances'] for name, entry in node['settings'].items()}
        print(f'\nwithin {node["tolerances"]}: {verdict}')
    if arguments.json:
        with open(arguments.json, 'w') as handle:
            json.dump({title: {'pk': node.pk, **node.get_dict()} for title, node in results.items()}, handle, indent=1)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--metal', default='Ca')
commands = parser.add_subparsers(dest='command', required=True)
submit_parser = commands.add_parser('submit', help='submit the settings not yet in the group')
submit_parser.add_argument('--code', default='pw@localhost')
submit_parser.add_argument('--pseudo-family', default='polyhydride/PBE/PAW')
submit_parser.add_argument('--max-concurrent', type=int, default=1, help='pw.x runs at once per setting')
submit_parser.add_argument('--only', nargs='+', choices=sorted(SETTINGS), help='submit only these settings')
report_parser = commands.add_parser('report', help='compare the finished settings (calcfunction nodes)')
report_parser.add_argument('--json', help='also write the results to this file')
arguments = parser.parse_args()
submit_settings(arguments) if arguments.command == 'submit' else report(arguments)
