"""``aiida-polyhydride demo``: set up the embedded profile and run the main job as far as the project goes today."""

from __future__ import annotations

import time

import click

from ..setup import SetupError
from ..setup.profile import DEFAULT_PROFILE


@click.command()
@click.option('-p', '--profile-name', default=DEFAULT_PROFILE, show_default=True, help='AiiDA profile to use.')
@click.option('--timeout', default=900, show_default=True, help='Seconds to wait for the DFT labels.')
def demo(profile_name: str, timeout: int) -> None:
    """Set up the embedded profile, build the Ca-H training domain, label frames with pw.x, train a committee.

    The labels run as a LabelWorkChain (one PwBaseWorkChain per frame) and an IsolatedAtomsWorkChain (the per-type
    energy shifts of the potential), then a CommitteeWorkChain trains two tiny Allegro models; all are submitted to
    the AiiDA daemon, so they appear in `verdi process list`.
    """
    from .setup import run_setup

    click.secho('1. Setting up the profile, computer, codes and pseudopotentials', bold=True)
    try:
        for result in run_setup(profile_name):
            click.echo(f'   {result}')
    except SetupError as exception:
        raise click.ClickException(str(exception)) from None

    click.secho('2. Building the Ca-H training domain (aiida_polyhydride.structures)', bold=True)
    structures = _training_domain_examples()
    for name, atoms in structures.items():
        formula = atoms.get_chemical_formula('metal')
        click.echo(f'   {name:<28} {formula:<10} {len(atoms):>4} atoms  {atoms.get_volume():8.1f} A^3')

    click.secho('3. Labelling CaH4 frames and isolated atoms with pw.x through the daemon (protocol fast)', bold=True)
    label, isolated = _submit_labels(structures['CaH4 I4/mmm'])
    for node in (label, isolated):
        click.echo(f'   submitted {node.process_label}<{node.pk}>')
    click.echo(f'   waiting (timeout {timeout} s)')
    for node in (label, isolated):
        _wait(node, timeout, profile_name)
    _report(label, isolated, profile_name)

    click.secho('5. Training a committee of two tiny Allegro models on the labels (protocol tiny)', bold=True)
    committee = _submit_committee(label.outputs.dataset, isolated.outputs.energies)
    click.echo(f'   submitted CommitteeWorkChain<{committee.pk}>; waiting')
    _wait(committee, timeout, profile_name)
    _report_committee(committee, profile_name)


def _training_domain_examples() -> dict:
    from ..structures import bulk_phase, dense_h2_fluid, off_stoichiometric, primitive_cell, slab_h2_interface

    return {
        'CaH2 Pnma': bulk_phase('MH2-Pnma', 'Ca'),
        'CaH2 P6_3/mmc': bulk_phase('MH2-P63mmc', 'Ca'),
        'CaH4 I4/mmm': primitive_cell(bulk_phase('MH4-I4mmm', 'Ca')),
        'CaH6 Im-3m': bulk_phase('MH6-Im-3m', 'Ca'),
        'H2 fluid 0.35 g/cm^3': dense_h2_fluid(16, 0.35, seed=1),
        'CaH3 (off-stoichiometric)': off_stoichiometric(bulk_phase('MH4-I4mmm', 'Ca'), 3.0, seed=1),
        'CaH2(001) + H2 interface': slab_h2_interface('MH2-Pnma', 'Ca', miller=(0, 0, 1), layers=2, n_molecules=12),
    }


def _submit_labels(cah4):
    from aiida import orm
    from aiida.engine import submit

    from ..setup.computer import LOCALHOST, PW_CODE
    from ..structures import rattle
    from ..workflows.isolated_atoms import IsolatedAtomsWorkChain
    from ..workflows.label import LabelWorkChain

    _ensure_daemon()
    code = orm.load_code(f'{PW_CODE}@{LOCALHOST}')
    frames = [cah4] + [rattle(cah4, stdev=0.1, seed=seed) for seed in (1, 2, 3)]
    # 'fast' keeps the demo to a minute; training labels use 'moderate' (the family's recommended cutoffs)
    builder = LabelWorkChain.get_builder_from_protocol(
        code, [orm.StructureData(ase=frame) for frame in frames], protocol='fast', overrides={'max_concurrent': 2}
    )
    builder.origin = orm.Dict({'origin_builder': 'demo: CaH4 I4/mmm and a rattled copy'})
    builder.metadata.label = 'demo CaH4 labels'
    isolated = IsolatedAtomsWorkChain.get_builder_from_protocol(code, ['Ca', 'H'], protocol='fast')
    isolated.metadata.label = 'demo isolated atoms'
    return submit(builder), submit(isolated)


def _ensure_daemon() -> None:
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client()
    if not client.is_daemon_running:
        click.echo('   starting the AiiDA daemon')
        client.start_daemon()


def _submit_committee(dataset, energy_shifts):
    from aiida import orm
    from aiida.engine import submit

    from ..data import split_dataset
    from ..setup.computer import LOCALHOST, PYTHON_CODE
    from ..workflows.train import CommitteeWorkChain

    split = split_dataset(dataset, orm.Float(0.25), orm.Int(0))
    builder = CommitteeWorkChain.get_builder_from_protocol(
        orm.load_code(f'{PYTHON_CODE}@{LOCALHOST}'),
        split['training'],
        energy_shifts,
        split['validation'],
        protocol='tiny',
        overrides={'committee_size': 2},
    )
    builder.metadata.label = 'demo committee'
    return submit(builder)


def _report_committee(committee, profile_name: str) -> None:
    for key, model in sorted(committee.outputs.models.items()):
        metrics = model.metrics
        click.echo(
            f'   {key}        AllegroPotentialData<{model.pk}> seed {model.seed}: validation MAE '
            f'E {metrics["energy"]["mae"]:.0f} meV/atom, F {metrics["forces"]["mae"]:.0f} meV/A'
        )
    spread = committee.outputs.spread
    click.echo(f'   spread          mean sigma_F {spread["sigma_f_mean"]:.3f} eV/A on the validation frames')
    click.echo(f'   provenance      verdi -p {profile_name} process show {committee.pk}')
    click.echo('   (3 epochs of a 2k-parameter model: the errors are large by design; see protocols/train.yaml)')


def _wait(node, timeout: int, profile_name: str) -> None:
    start = time.monotonic()
    while not node.is_terminated:
        if time.monotonic() - start > timeout:
            raise click.ClickException(
                f'{node.process_label}<{node.pk}> did not finish within {timeout} s; it is still in the daemon: '
                f'follow it with `verdi -p {profile_name} process report {node.pk}`.'
            )
        time.sleep(2)
    if not node.is_finished_ok:
        raise click.ClickException(
            f'{node.process_label}<{node.pk}> ended with exit status {node.exit_status}: {node.exit_message}. '
            f'See `verdi -p {profile_name} process report {node.pk}`.'
        )


def _report(label, isolated, profile_name: str) -> None:
    import numpy as np
    from ase.units import GPa

    dataset = label.outputs.dataset
    click.secho('4. Result', bold=True)
    click.echo(
        f'   dataset         TrainingSetData<{dataset.pk}>: {len(dataset)} frames, {"+".join(dataset.properties)}'
    )
    for index, frame in enumerate(dataset.to_ase()):
        energy = frame.get_potential_energy() / len(frame)
        force = np.linalg.norm(frame.get_forces(), axis=1).max()
        pressure = -np.trace(frame.get_stress(voigt=False)) / 3 / GPa  # ASE stress (eV/A^3) -> pressure (GPa)
        click.echo(f'   frame {index}         {energy:.4f} eV/atom, max |F| {force:.3f} eV/A, P {pressure:.1f} GPa')
    energies = isolated.outputs.energies.get_dict()
    click.echo('   isolated atoms  ' + ', '.join(f'{element} {value:.4f} eV' for element, value in energies.items()))
    click.echo(f'   provenance      verdi -p {profile_name} process show {label.pk}')
    click.echo(f'   graph           verdi -p {profile_name} node graph generate {dataset.pk}')
