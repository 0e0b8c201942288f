"""``aiida-polyhydride demo``: the main job in miniature on the embedded profile.

A small active-learning loop on Ca-H (real pw.x labels, real Allegro committees, MD with the committee), then a short
surface-melting run of a CaH2 slab in dense H2 with the loop's committee, ending with a summary and the plots' paths.
Everything runs through the AiiDA daemon, so it is all in `verdi process list` and the provenance graph.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..setup import SetupError
from ..setup.profile import DEFAULT_PROFILE
from .common import profile_or_default

#: the demo's conditions: the CaH2 + H2 -> CaH4 study's pressure; a modest exploration temperature for tiny models
PRESSURE_GPA = 40.0
EXPLORE_K = 600.0
MELT_K = 1473.0
#: surface melting in miniature: a 34-atom CaH2(001) slab + H2, 20 + 20 fs equilibration, 100 fs production
TINY_INTERFACE = {
    'slab': {'phase': 'MH2-P63mmc', 'miller': [0, 0, 1], 'layers': 2, 'repeats': [1, 1]},
    'equilibration': {'nvt_ps': 0.02, 'npt_ps': 0.02},
    'md_parameters': {'dump_every': 5, 'compile_model': False},  # new models each run: no 30 s compiles
    'relabel_on_uncertainty': False,  # relabelling would add a DFT + training round: see the tutorial
}
MELT_PS = 0.1


@click.command()
@click.option(
    '-p',
    '--profile-name',
    default=None,
    callback=profile_or_default,
    help=f'AiiDA profile to use; default: the one given before the command, else {DEFAULT_PROFILE!r}.',
)
@click.option('--timeout', default=1800, show_default=True, help='Seconds to wait for each of the two workflows.')
@click.option(
    '--output-dir',
    type=click.Path(file_okay=False, path_type=Path),
    default=Path('polyhydride-demo'),
    show_default=True,
    help='Where the plots are written.',
)
def demo(profile_name: str, timeout: int, output_dir: Path) -> None:
    """Set up the embedded profile, run a small active-learning loop on Ca-H, then a short surface-melting run.

    1. profile, computer, codes and a generated pseudopotential family;
    2. ActiveLearningWorkChain (protocol fast): seeds labelled with pw.x, a committee of two tiny Allegro models,
       MD of CaH4 at 40 GPa with the committee, uncertain frames labelled, the committee retrained (two iterations);
    3. SurfaceMeltingWorkChain (protocol fast, shortened): a CaH2 slab in dense H2 at 1473 K and 40 GPa with the
       loop's committee: H/M, molten depth, phase and the committee's uncertainty;
    4. the plots of both, written to --output-dir.
    """
    from .setup import run_setup

    click.secho('1. Setting up the profile, computer, codes and pseudopotentials', bold=True)
    try:
        for result in run_setup(profile_name):
            click.echo(f'   {result}')
    except SetupError as exception:
        raise click.ClickException(str(exception)) from None
    _ensure_daemon()

    click.secho('2. Active learning on Ca-H (protocol fast: tiny cells and models, two iterations)', bold=True)
    loop = _submit_active_learning()
    click.echo(f'   submitted ActiveLearningWorkChain<{loop.pk}>; its report:')
    _follow(loop, timeout, profile_name)
    _report_loop(loop, profile_name)

    conditions = f'{MELT_K:.0f} K, {PRESSURE_GPA:.0f} GPa, {MELT_PS} ps'
    click.secho(f"3. Surface melting with the loop's committee: CaH2(001) + H2 at {conditions}", bold=True)
    melting = _submit_surface_melting(loop)
    click.echo(f'   submitted SurfaceMeltingWorkChain<{melting.pk}>; its report:')
    _follow(melting, timeout, profile_name)
    _report_melting(melting, profile_name)

    click.secho(f'4. Plots in {output_dir}', bold=True)
    for path in _write_plots({'active_learning': loop, 'surface_melting': melting}, output_dir):
        click.echo(f'   {path}')
    click.echo(f'   everything else: aiida-polyhydride export {melting.pk} --to {output_dir / "surface_melting"}')


def _ensure_daemon() -> None:
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client()
    if not client.is_daemon_running:
        click.echo('   starting the AiiDA daemon')
        client.start_daemon()


def _seed_structures() -> dict:
    """Tiny cells to label first: CaH4 and CaH2 (rattled, strained) and solid H2; seconds each in pw.x."""
    from aiida import orm

    from ..structures import bulk_phase, primitive_cell, rattle, strain
    from ..structures.enthalpy_cells import solid_h2

    cah4 = primitive_cell(bulk_phase('MH4-I4mmm', 'Ca'))
    cah2 = bulk_phase('MH2-P63mmc', 'Ca')
    seeds = {
        'CaH4': cah4,
        'CaH4_rattled_1': rattle(cah4, stdev=0.1, seed=1),
        'CaH4_strained': rattle(strain(cah4, 0.04, seed=3), stdev=0.05, seed=3),
        'CaH2': rattle(cah2, stdev=0.05, seed=4),
        'H2_solid': rattle(solid_h2(), stdev=0.05, seed=6),
    }
    return {name: orm.StructureData(ase=atoms) for name, atoms in seeds.items()}


def _submit_active_learning():
    from aiida import orm
    from aiida.engine import submit

    from ..setup.computer import LOCALHOST, PW_CODE, PYTHON_CODE
    from ..structures import bulk_phase, primitive_cell
    from ..workflows.active_learning import ActiveLearningWorkChain

    python = orm.load_code(f'{PYTHON_CODE}@{LOCALHOST}')
    cah4 = primitive_cell(bulk_phase('MH4-I4mmm', 'Ca'))
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        orm.load_code(f'{PW_CODE}@{LOCALHOST}'),
        python,
        python,
        'Ca',
        pressures=[PRESSURE_GPA],
        temperatures=[EXPLORE_K],
        protocol='fast',
        # a ~2x2x2 k mesh keeps each label to seconds (a demo, not converged labels); every frame of iteration 1 is a
        # candidate, then the labelled ones calibrate the trust window
        overrides={'label': {'overrides': {'kpoints_distance': 1.0, 'max_concurrent': 2}},
                   'trust_window': {'lo': 0.0, 'hi': 1000.0}},
        initial_structures=_seed_structures(),
        exploration_structures={'CaH4_bulk': orm.StructureData(ase=cah4)},
    )  # fmt: skip
    builder.metadata.label = 'demo active learning'
    return submit(builder)


def _submit_surface_melting(loop):
    from aiida import orm
    from aiida.engine import submit

    from ..setup.computer import LOCALHOST, PYTHON_CODE
    from ..workflows.surface_melting import SurfaceMeltingWorkChain

    builder = SurfaceMeltingWorkChain.get_builder_from_protocol(
        orm.load_code(f'{PYTHON_CODE}@{LOCALHOST}'),
        None,
        'Ca',
        temperature=MELT_K,
        pressure=PRESSURE_GPA,
        length=MELT_PS,
        protocol='fast',
        overrides=TINY_INTERFACE,
        active_learning=loop,
    )
    builder.metadata.label = 'demo surface melting'
    return submit(builder)


def _follow(node, timeout: int, profile_name: str) -> None:
    """Print the process's report lines as they come, until it terminates (or ``timeout`` s)."""
    from aiida.cmdline.utils.common import get_workchain_report

    start, shown = time.monotonic(), 0
    while True:
        terminated = node.is_terminated
        report = get_workchain_report(node, 'REPORT', max_depth=1)  # its own lines; sub-processes have theirs
        lines = [line for line in report.splitlines() if line.strip() and 'No log messages' not in line]
        for line in lines[shown:]:
            click.echo(f'   | {line.split("]: ", 1)[-1] if "]: " in line else line}')
        shown = len(lines)
        if terminated:
            break
        if time.monotonic() - start > timeout:
            raise click.ClickException(
                f'{node.process_label}<{node.pk}> did not finish within {timeout} s; it is still in the daemon: '
                f'follow it with `aiida-polyhydride status {node.pk} --watch -p {profile_name}`.'
            )
        time.sleep(2)


def _report_loop(loop, profile_name: str) -> None:
    from ..workflows.active_learning import ActiveLearningWorkChain

    not_converged = ActiveLearningWorkChain.exit_codes.ERROR_MAX_ITERATIONS.status
    if not loop.is_finished_ok and loop.exit_status != not_converged:
        raise click.ClickException(
            f'ActiveLearningWorkChain<{loop.pk}> failed [{loop.exit_status}]: {loop.exit_message}. '
            f'See `verdi -p {profile_name} process report {loop.pk}`.'
        )
    history = loop.outputs.history.get_dict()
    click.echo('   iteration  training  validation  F RMSE (meV/A)  accurate (CaH4 bulk)  labelled')
    for record in history['iterations']:
        accurate = ', '.join(f'{ratio["accurate"]:.2f}' for ratio in record.get('ratios', {}).values())
        click.echo(
            f'   {record["iteration"]:>9}  {record.get("n_training", 0):>8}  {record.get("n_validation", 0):>10}  '
            f'{record.get("validation_forces_rmse", float("nan")):>14.0f}  {accurate:>20}  '
            f'{record.get("labels_added", 0):>8}'
        )
    verdict = 'converged' if loop.is_finished_ok else 'not converged in two iterations (expected of tiny models)'
    window = loop.outputs.trust_window
    click.echo(
        f'   {verdict}; final dataset {len(loop.outputs.training_set)} + {len(loop.outputs.validation_set)} '
        f'frames, committee of {len(loop.outputs.models)}, trust window [{window["lo"]:.3f}, {window["hi"]:.3f}) eV/A'
    )
    click.echo(f'   provenance      verdi -p {profile_name} process show {loop.pk}')


def _report_melting(melting, profile_name: str) -> None:
    if 'summary' not in melting.outputs:
        raise click.ClickException(
            f'SurfaceMeltingWorkChain<{melting.pk}> failed [{melting.exit_status}]: {melting.exit_message}. '
            f'See `verdi -p {profile_name} process report {melting.pk}`.'
        )
    summary = melting.outputs.summary
    click.echo(f'   H/M             {summary["initial_h_per_metal"]:.3f} -> {summary["final_h_per_metal"]:.3f} '
               f'(condensed region) over {summary["duration_ps"]:.2f} ps')  # fmt: skip
    click.echo(f'   molten depth    max {summary["max_molten_depth_A"]:.1f} A')
    click.echo(f'   phase           {summary["phase"]}')
    flag = ' (extrapolating: retrain before trusting the numbers)' if summary['extrapolating'] else ''
    click.echo(f'   uncertainty     {summary["uncertainty_fraction"]:.0%} of the frames above sigma_F lo{flag}')
    click.echo(f'   summary         Dict<{summary.pk}>; provenance: verdi -p {profile_name} process show {melting.pk}')
    if not melting.is_finished_ok:
        click.echo(f'   note            [{melting.exit_status}] {melting.exit_message}')


def _write_plots(processes: dict, directory: Path) -> list[Path]:
    """The PNG outputs of each process, as ``directory/<name>/<output name>.png``."""
    paths = []
    for name, process in processes.items():
        if 'plots' not in process.outputs:
            continue
        (directory / name).mkdir(parents=True, exist_ok=True)
        for label, plot in sorted(process.outputs.plots.items()):
            path = directory / name / f'{label}.png'
            path.write_bytes(plot.get_content(mode='rb'))
            paths.append(path)
    return paths
