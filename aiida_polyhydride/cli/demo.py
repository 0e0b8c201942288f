"""``aiida-polyhydride demo``: set up the embedded profile and run the main job as far as the project goes today."""

from __future__ import annotations

import time

import click

from ..setup import SetupError
from ..setup.profile import DEFAULT_PROFILE


@click.command()
@click.option('-p', '--profile-name', default=DEFAULT_PROFILE, show_default=True, help='AiiDA profile to use.')
@click.option('--timeout', default=900, show_default=True, help='Seconds to wait for the DFT label.')
def demo(profile_name: str, timeout: int) -> None:
    """Set up the embedded profile, build the Ca-H training domain and label one structure with pw.x.

    The label runs as a PwBaseWorkChain submitted to the AiiDA daemon, so it appears in `verdi process list`.
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

    click.secho('3. Labelling CaH4 (I4/mmm) with pw.x through the daemon', bold=True)
    node = _submit_label(structures['CaH4 I4/mmm'])
    click.echo(f'   submitted PwBaseWorkChain<{node.pk}>; waiting (timeout {timeout} s)')
    _wait(node, timeout)
    _report(node, profile_name)


def _training_domain_examples() -> dict:
    from ..structures import bulk_phase, dense_h2_fluid, off_stoichiometric, primitive_cell, slab_h2_interface

    cah4 = primitive_cell(bulk_phase('MH4-I4mmm', 'Ca'))
    return {
        'CaH2 Pnma': bulk_phase('MH2-Pnma', 'Ca'),
        'CaH2 P6_3/mmc': bulk_phase('MH2-P63mmc', 'Ca'),
        'CaH4 I4/mmm': cah4,
        'CaH6 Im-3m': bulk_phase('MH6-Im-3m', 'Ca'),
        'H2 fluid 0.35 g/cm^3': dense_h2_fluid(16, 0.35, seed=1),
        'CaH3 (off-stoichiometric)': off_stoichiometric(bulk_phase('MH4-I4mmm', 'Ca'), 3.0, seed=1),
        'CaH2(001) + H2 interface': slab_h2_interface('MH2-Pnma', 'Ca', miller=(0, 0, 1), layers=2, n_molecules=12),
    }


def _submit_label(atoms):
    from aiida import orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client

    from ..setup.computer import LOCALHOST, PW_CODE
    from ..workflows.pw import get_singlepoint_builder

    client = get_daemon_client()
    if not client.is_daemon_running:
        click.echo('   starting the AiiDA daemon')
        client.start_daemon()
    code = orm.load_code(f'{PW_CODE}@{LOCALHOST}')
    # 'low' cutoffs keep the demo to seconds; production labels use 'normal' or SSSP.
    builder = get_singlepoint_builder(code, orm.StructureData(ase=atoms), stringency='low')
    builder.metadata.label = 'demo CaH4 single point'
    return submit(builder)


def _wait(node, timeout: int) -> None:
    start = time.monotonic()
    while not node.is_terminated:
        if time.monotonic() - start > timeout:
            raise click.ClickException(
                f'PwBaseWorkChain<{node.pk}> did not finish within {timeout} s; it is still in the daemon: '
                f'follow it with `verdi process report {node.pk}`.'
            )
        time.sleep(2)


def _report(node, profile_name: str) -> None:
    if not node.is_finished_ok:
        raise click.ClickException(
            f'PwBaseWorkChain<{node.pk}> ended with exit status {node.exit_status}: {node.exit_message}. '
            f'See `verdi -p {profile_name} process report {node.pk}`.'
        )
    import numpy as np

    parameters = node.outputs.output_parameters.get_dict()
    forces = node.outputs.output_trajectory.get_array('forces')[-1]
    stress = node.outputs.output_trajectory.get_array('stress')[-1]
    n_atoms = len(forces)
    # aiida-quantumespresso keeps pw.x's stress sign and unit (GPa): pressure = +trace/3, as pw.x prints P=.
    pressure = np.trace(stress) / 3
    click.secho('4. Result', bold=True)
    click.echo(f'   energy          {parameters["energy"]:.5f} eV ({parameters["energy"] / n_atoms:.5f} eV/atom)')
    click.echo(f'   max |force|     {np.abs(forces).max():.4f} eV/A')
    click.echo(f'   pressure        {pressure:.2f} GPa')
    click.echo(f'   wall time pw.x  {parameters.get("wall_time_seconds", float("nan")):.1f} s')
    click.echo(f'   provenance      verdi -p {profile_name} process show {node.pk}')
