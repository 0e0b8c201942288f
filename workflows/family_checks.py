"""The pseudopotential family against known numbers: fcc Ca lattice constant, H2 bond length, CaH2 (Pnma) volume.

    verdi -p PROFILE run workflows/family_checks.py -- submit             # three PwRelaxWorkChains
    verdi -p PROFILE run workflows/family_checks.py -- report             # compare_with_experiment, once finished

Each system is relaxed at 0 GPa with the labelling protocol's cutoffs and smearing (the campaign's settings):
fcc Ca (vc-relax, one-atom cell), an H2 molecule in a 10 x 10.5 x 11 Angstrom box (positions, Gamma) and CaH2
Pnma (vc-relax from the measured cell). ``compare_with_experiment`` (a calcfunction) gives the deviations from
experiment (analysis/reference_checks.py names the sources). The runs are kept in ``family-checks/<family>``.
"""

from __future__ import annotations

import argparse

from aiida import orm
from aiida.engine import submit
from aiida_quantumespresso.common.types import RelaxType
from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain
from ase import Atoms
from ase.build import bulk

from aiida_polyhydride.analysis.reference_checks import EXPERIMENT
from aiida_polyhydride.structures import bulk_phase
from aiida_polyhydride.workflows.convergence import compare_with_experiment
from aiida_polyhydride.workflows.pw import recommended_cutoffs


def systems() -> dict[str, tuple[Atoms, RelaxType]]:
    """Starting structures, a few percent off the measured ones so that the relaxation has to move them."""
    fcc = bulk('Ca', 'fcc', a=EXPERIMENT['fcc_Ca_lattice_constant'][0] * 1.02)
    molecule = Atoms('H2', positions=[(5.0, 5.25, 5.5), (5.0, 5.25, 6.28)], cell=(10.0, 10.5, 11.0), pbc=True)
    cah2 = bulk_phase('MH2-Pnma', 'Ca', volume_per_atom=EXPERIMENT['CaH2_Pnma_volume'][0] / 3)
    return {
        'fcc_Ca': (fcc, RelaxType.POSITIONS_CELL),
        'H2_molecule': (molecule, RelaxType.POSITIONS),
        'CaH2_Pnma': (cah2, RelaxType.POSITIONS_CELL),
    }


def group_for(family: str) -> orm.Group:
    return orm.Group.collection.get_or_create(label=f'family-checks/{family}')[0]


def submit_checks(arguments) -> None:
    group = group_for(arguments.pseudo_family)
    done = {node.label for node in group.nodes if isinstance(node, orm.WorkflowNode)}
    code = orm.load_code(arguments.code)
    cutoffs = recommended_cutoffs(arguments.pseudo_family, ['Ca', 'H'], arguments.cutoff_scale)
    system = {**cutoffs, 'occupations': 'smearing', 'smearing': 'cold', 'degauss': arguments.degauss}
    for name, (atoms, relax_type) in systems().items():
        if name in done:
            print(f'{name}: already in {group.label}, skipped')
            continue
        spacing = 100.0 if name == 'H2_molecule' else arguments.kpoints_distance  # a molecule: Gamma only
        base = {
            'pseudo_family': arguments.pseudo_family,
            'kpoints_distance': spacing,
            'pw': {'parameters': {'SYSTEM': system}},
        }
        builder = PwRelaxWorkChain.get_builder_from_protocol(
            code,
            orm.StructureData(ase=atoms),
            protocol='balanced',
            relax_type=relax_type,
            overrides={'base_relax': base, 'base_init_relax': base},
            options={'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}},
        )
        builder.pop('base_init_relax')  # optional in PwRelaxWorkChain: one relaxation is enough here
        builder.metadata.label = name
        node = submit(builder)
        group.add_nodes(node)
        print(f'{name}: PwRelaxWorkChain<{node.pk}>')


def report(arguments) -> None:
    group = group_for(arguments.pseudo_family)
    relaxed = {}
    for node in group.nodes:
        if not isinstance(node, orm.WorkflowNode):
            continue
        if not node.is_terminated:
            print(f'{node.label}: still running (PwRelaxWorkChain<{node.pk}>)')
        elif 'output_structure' in node.outputs:
            relaxed[node.label] = node.outputs.output_structure
        else:
            print(f'{node.label}: failed ({node.exit_status}: {node.exit_message})')
    if not relaxed:
        return
    result = compare_with_experiment(**relaxed)
    print(f'\n| quantity | computed | experiment | deviation | source |\n|---|---|---|---|---|  (Dict<{result.pk}>)')
    for name, entry in result.get_dict().items():
        print(
            f'| {name} | {entry["computed"]:.4f} {entry["unit"]} | {entry["experiment"]:.4f} | '
            f'{entry["deviation_percent"]:+.2f}% | {entry["source"]} |'
        )


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--pseudo-family', default='polyhydride/PBE/PAW')
commands = parser.add_subparsers(dest='command', required=True)
submit_parser = commands.add_parser('submit', help='submit the relaxations not yet in the group')
submit_parser.add_argument('--code', default='pw@localhost')
submit_parser.add_argument('--kpoints-distance', type=float, default=0.2, help='1/Angstrom, for the two crystals')
submit_parser.add_argument('--cutoff-scale', type=float, default=1.0, help="times the family's recommended cutoffs")
submit_parser.add_argument('--degauss', type=float, default=0.02, help='cold smearing (Ry)')
commands.add_parser('report', help='compare the relaxed structures with experiment (a calcfunction node)')
arguments = parser.parse_args()
submit_checks(arguments) if arguments.command == 'submit' else report(arguments)
