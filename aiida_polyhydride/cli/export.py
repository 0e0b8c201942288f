"""``aiida-polyhydride export PK --to DIR``: the files a user takes away from a run, and its provenance graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from .common import NodeParamType, clear_errors, profile_option

PLOT_SUFFIXES = ('.png', '.svg', '.pdf')
EXPORTABLE = (
    'aiida_polyhydride.data.TrainingSetData',
    'aiida_polyhydride.data.AllegroPotentialData',
    'aiida.orm.TrajectoryData',
    'aiida.orm.SinglefileData',
)


@click.command()
@click.argument(
    'node',
    metavar='PK',
    type=NodeParamType(
        'aiida.orm.ProcessNode',
        *EXPORTABLE,
        description='a process, a TrainingSetData, an AllegroPotentialData, a TrajectoryData or a SinglefileData',
    ),
)
@click.option(
    '--to', 'directory', required=True, type=click.Path(file_okay=False, path_type=Path), help='Output directory.'
)
@profile_option
@click.option('--graph/--no-graph', default=True, show_default=True, help='Write the provenance graph.')
@click.option('--graph-format', type=click.Choice(['svg', 'png', 'pdf']), default='svg', show_default=True)
@click.option(
    '--graph-depth',
    type=click.IntRange(min=1),
    default=None,
    help='Levels of called processes and outputs in the graph; default: all.',
)
@clear_errors(OSError)
def export(node, directory: Path, profile_name: str, graph: bool, graph_format: str, graph_depth: int | None) -> None:
    """Write the datasets, models, trajectories and plots of PK (a process or one such node) to a directory.

    For a process: every TrainingSetData (as extxyz), AllegroPotentialData (as .nequip.zip, the file nequip
    compiles), TrajectoryData (as extxyz) and plot (PNG/SVG/PDF SinglefileData) created by it or by any process it
    called. `export.json` lists each file with the node's PK, UUID and the process and link that made it. The
    provenance graph (the process's direct inputs and everything below it) is written as Graphviz source
    provenance.gv and, where the `dot` program is installed, rendered.
    """
    directory.mkdir(parents=True, exist_ok=True)
    manifest = []
    for data, creator, link_label in exportable_nodes(node):
        path = write_node(data, directory, link_label)
        manifest.append(
            {
                'path': str(path.relative_to(directory)),
                'pk': data.pk,
                'uuid': data.uuid,
                'type': type(data).__name__,
                'created_by': f'{creator.process_label}<{creator.pk}>' if creator is not None else None,
                'link_label': link_label,
            }
        )
        click.echo(f'{type(data).__name__}<{data.pk}> -> {path}')
    (directory / 'export.json').write_text(json.dumps(manifest, indent=2) + '\n')
    if not manifest:
        click.echo(f'{_describe(node)} created no dataset, model, trajectory or plot.')
    if graph:
        source, rendered = write_provenance_graph(node, directory, graph_format, graph_depth)
        if rendered is None:
            click.echo(
                f'provenance graph -> {source} (Graphviz source: `dot` is not installed, so it was not rendered; '
                f'render it elsewhere with `dot -T{graph_format} {source.name}`)'
            )
        else:
            click.echo(f'provenance graph -> {rendered} (source {source.name})')
    click.secho(f'Exported {len(manifest)} file(s) of {_describe(node)} to {directory}', fg='green')


def exportable_nodes(node) -> list[tuple]:
    """(data node, creating process or None, link label) of what ``node`` holds: itself, or what a process made."""
    from aiida import orm
    from aiida.common.links import LinkType

    from .common import _import_class

    classes = tuple(_import_class(path) for path in EXPORTABLE)
    if not isinstance(node, orm.ProcessNode):
        creator = node.creator
        return [(node, creator, _creation_label(node) if creator is not None else 'node')]
    processes = [node, *getattr(node, 'called_descendants', [])]
    query = orm.QueryBuilder()
    pks = [process.pk for process in processes]
    query.append(orm.ProcessNode, filters={'id': {'in': pks}}, tag='process', project=['*'])
    query.append(  # a CREATE link: the process found is the data's creator
        classes,
        with_incoming='process',
        edge_filters={'type': LinkType.CREATE.value},
        edge_tag='link',
        edge_project=['label'],
        tag='data',
        project=['*'],
    )
    exported = []
    for row in sorted(query.dict(), key=lambda row: row['data']['*'].pk):
        data, creator, label = row['data']['*'], row['process']['*'], row['link']['label']
        if isinstance(data, orm.SinglefileData) and Path(data.filename).suffix.lower() not in PLOT_SUFFIXES:
            continue
        exported.append((data, creator, label))
    return exported


def write_node(data, directory: Path, link_label: str) -> Path:
    """Write one data node to its kind's subdirectory; returns the path."""
    from aiida import orm

    from ..data import AllegroPotentialData, TrainingSetData

    stem = f'{data.pk}_{link_label}'
    if isinstance(data, TrainingSetData):
        path = directory / 'datasets' / f'{stem}.extxyz'
        path.parent.mkdir(exist_ok=True)
        # the stored bytes themselves: the file matches the node's sha256 attribute
        path.write_bytes(data.base.repository.get_object_content(data.FILENAME, mode='rb'))
    elif isinstance(data, AllegroPotentialData):
        path = directory / 'models' / f'{stem}.nequip.zip'
        path.parent.mkdir(exist_ok=True)
        data.export(path)
    elif isinstance(data, orm.TrajectoryData):
        from ase.io import write

        path = directory / 'trajectories' / f'{stem}.extxyz'
        path.parent.mkdir(exist_ok=True)
        write(path, trajectory_frames(data), format='extxyz')
    elif isinstance(data, orm.SinglefileData):
        path = directory / 'plots' / f'{data.pk}_{data.filename}'
        path.parent.mkdir(exist_ok=True)
        with data.open(mode='rb') as source, path.open('wb') as target:
            shutil.copyfileobj(source, target)
    else:
        raise click.ClickException(f'{_describe(data)} cannot be exported: it is not one of {", ".join(EXPORTABLE)}')
    return path


def trajectory_frames(trajectory) -> list:
    """ASE frames of a TrajectoryData: cells, positions, step and time (fs, as MDCalculation stores it) in info, and
    the energies as the frame energy.

    Every other per-step array of the node (temperature_K, pressure_GPa, sigma_f, ... of MDCalculation) goes into
    each frame's info.
    """
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    symbols = trajectory.symbols
    positions = trajectory.get_positions()
    cells = trajectory.get_cells()
    steps = trajectory.get_stepids()
    times = trajectory.get_times()
    n_steps = len(positions)
    # TrajectoryData stores pbc since aiida 2.8; older nodes: periodic where there is a cell
    pbc = trajectory.pbc if trajectory.pbc is not None else cells is not None
    per_step = {
        name: trajectory.get_array(name)
        for name in trajectory.get_arraynames()
        if name not in ('positions', 'cells', 'steps', 'times')
        and np.ndim(trajectory.get_array(name)) == 1
        and len(trajectory.get_array(name)) == n_steps
    }
    frames = []
    for index in range(n_steps):
        cell = cells[index] if cells is not None else None
        atoms = Atoms(symbols=symbols, positions=positions[index], cell=cell, pbc=pbc)
        atoms.info['step'] = int(steps[index])
        if times is not None:
            atoms.info['time_fs'] = float(times[index])
        for name, values in per_step.items():
            if name == 'energies':
                atoms.calc = SinglePointCalculator(atoms, energy=float(values[index]))
            else:
                atoms.info[name] = float(values[index])
        frames.append(atoms)
    return frames


def write_provenance_graph(node, directory: Path, fmt: str = 'svg', depth: int | None = None):
    """Graphviz source of ``node``'s provenance (direct inputs, all it called and made) and, if dot exists, a render.

    Returns (source path, rendered path or None when the `dot` program is not installed).
    """
    from aiida.tools.visualization import Graph

    graph = Graph(graph_attr={'rankdir': 'TB'})
    graph.recurse_ancestors(node, depth=1, annotate_links='both')
    graph.recurse_descendants(node, depth=depth, annotate_links='both', include_process_inputs=True)
    source = directory / 'provenance.gv'
    source.write_text(graph.graphviz.source)
    if shutil.which('dot') is None:
        return source, None
    rendered = directory / f'provenance.{fmt}'
    graph.graphviz.render(outfile=rendered, format=fmt, cleanup=True)
    source.write_text(graph.graphviz.source)  # render(cleanup=True) removes the source it wrote next to the output
    return source, rendered


def _creation_label(data) -> str:
    from aiida.common.links import LinkType

    links = data.base.links.get_incoming(link_type=LinkType.CREATE).all()
    return links[0].link_label if links else 'node'


def _describe(node) -> str:
    label = getattr(node, 'process_label', None) or type(node).__name__
    return f'{label}<{node.pk}>'
