"""``aiida-polyhydride potentials``: released potentials (list, import into a profile, release a run's committee)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import NodeParamType, clear_errors, profile_option


def _release_error() -> type[Exception]:
    from ..releases import ReleaseError

    return ReleaseError


@click.group()
def potentials() -> None:
    """Released potentials: a committee with its datasets, errors, model card and provenance archive."""


@potentials.command('list')
def list_releases() -> None:
    """The releases found on the search path ($POLYHYDRIDE_POTENTIALS, then the checkout's potentials/)."""
    import json

    from ..releases import MANIFEST, available_releases, search_path

    releases = available_releases()
    if not releases:
        click.echo(f'no releases in {[str(path) for path in search_path()]}')
    for name, version, folder in releases:
        manifest = json.loads((folder / MANIFEST).read_text())
        click.echo(
            f'{name} {version}: {len(manifest["models"])} models of {"/".join(manifest["type_names"])}, '
            f'{manifest["datasets"]["training_set"]["n_frames"]} training frames ({folder})'
        )


@potentials.command('import')
@click.argument('name')
@click.option('--version', default=None, help='Release version; default: the latest.')
@click.option(
    '--archive/--models-only',
    default=True,
    show_default=True,
    help='Import the whole provenance archive, or only the models and datasets as new nodes.',
)
@profile_option
def import_command(name: str, version: str | None, archive: bool, profile_name: str) -> None:
    """Import release NAME (e.g. ca-h, or the path of a release folder) into the profile and print the PKs.

    Every file is checked against the sha256 in release.json first; a release imported before is not imported
    again. The nodes go into the group potentials/NAME/VERSION.
    """
    from ..releases import find_release, import_release

    @clear_errors(_release_error(), OSError)
    def run() -> None:
        folder = find_release(name, version)
        nodes = import_release(folder, archive=archive)
        click.echo(f'release {folder} in profile {profile_name!r}:')
        for role, node in nodes.items():
            click.echo(f'  {role}: {type(node).__name__}<{node.pk}> {node.uuid}')

    run()


@potentials.command('release')
@click.argument(
    'run',
    metavar='PK',
    type=NodeParamType('aiida.orm.WorkflowNode', description='an ActiveLearningWorkChain'),
)
@click.option('--name', required=True, help='Release name, e.g. ca-h.')
@click.option('--version', 'version', required=True, help='Release version, e.g. v0.1.')
@click.option(
    '--test-set',
    'test_set',
    required=True,
    type=NodeParamType(
        'aiida_polyhydride.data.TrainingSetData', description='a labelled TrainingSetData the committee never saw'
    ),
    help='Labelled frames the committee was not trained or validated on: the model card reports its errors on them.',
)
@click.option(
    '--to',
    'root',
    type=click.Path(file_okay=False, path_type=Path),
    default=Path('potentials'),
    show_default=True,
    help='Folder of releases; the release is written to ROOT/NAME/VERSION.',
)
@click.option('--notes', default='', help='A paragraph for the model card (what this release is, its state).')
@click.option('--archive/--no-archive', default=True, show_default=True, help='Write provenance.aiida.')
@profile_option
def release(run, name: str, version: str, test_set, root: Path, notes: str, archive: bool, profile_name: str) -> None:
    """Write the committee of active-learning run PK as release NAME/VERSION: models, datasets, per-system errors
    on the test set (potential_errors calcfunctions), MODEL_CARD.md, provenance.aiida, release.json."""
    from ..releases import write_release
    from ..workflows.potential_errors import potential_errors

    @clear_errors(_release_error(), OSError)
    def run_release() -> None:
        if not test_set.is_labelled:
            raise click.ClickException(f'TrainingSetData<{test_set.pk}> is not labelled: a test set needs DFT labels')
        folder = root / name / version
        manifest = write_release(run, folder, name, version, test_set, potential_errors, archive, notes)
        errors = manifest['errors']['test_set']
        for member, entry in errors.items():
            click.echo(
                f'{member}: test set force RMSE {entry["all"]["forces_rmse_meV_per_A"]:.0f} meV/A, '
                f'energy RMSE {entry["all"]["energy_rmse_meV_per_atom"]:.1f} meV/atom (Dict {entry["uuid"]})'
            )
        click.echo(f'release written to {folder} ({len(manifest["files"])} files)')

    run_release()
