"""``aiida-polyhydride setup``: profile, computer, codes and pseudo family, idempotently."""

from __future__ import annotations

import click

from ..setup import SetupError, SetupResult
from ..setup.profile import DEFAULT_EMAIL, DEFAULT_PROFILE
from ..setup.pseudos import DEFAULT_FAMILY
from .common import load_profile_or_fail, profile_before_command, profile_or_default


def run_setup(
    profile_name: str = DEFAULT_PROFILE,
    *,
    postgres: bool = False,
    email: str = DEFAULT_EMAIL,
    postgres_superuser: dict | None = None,
    pseudo_family: str = DEFAULT_FAMILY,
    pw_executable: str = 'pw.x',
    poll_interval: float | None = None,
    archive: str | None = None,
) -> list[SetupResult]:
    """Every set-up step in order; the profile is loaded afterwards. Raises SetupError with a clear message."""
    from aiida import load_profile

    from ..setup.computer import setup_codes, setup_localhost
    from ..setup.profile import setup_profile
    from ..setup.pseudos import setup_pseudo_family

    results = [setup_profile(profile_name, postgres=postgres, email=email, postgres_superuser=postgres_superuser)]
    load_profile(profile_name, allow_switch=True)
    if archive is not None:
        from ..setup.archive import setup_archive

        results.append(setup_archive(archive))
    computer, computer_result = setup_localhost(poll_interval=poll_interval)
    results.append(computer_result)
    results.extend(setup_codes(computer, pw_executable))
    results.append(setup_pseudo_family(pseudo_family))
    return results


@click.group(invoke_without_command=True)
@click.option(
    '-p',
    '--profile-name',
    default=None,
    callback=profile_or_default,
    help=f'AiiDA profile to create/use; default: the one given before the command, else {DEFAULT_PROFILE!r}.',
)
@click.option(
    '--postgres',
    is_flag=True,
    help='PostgreSQL storage and RabbitMQ broker (production); default: SQLite with the ZeroMQ broker (no services).',
)
@click.option('--email', default=DEFAULT_EMAIL, show_default=True, help="Email of the profile's default user.")
@click.option('--pg-host', default='127.0.0.1', show_default=True, help='PostgreSQL host (with --postgres).')
@click.option('--pg-port', default=5432, show_default=True, type=int, help='PostgreSQL port (with --postgres).')
@click.option('--pg-superuser', default='postgres', show_default=True, help='Role allowed to create roles/databases.')
@click.option('--pg-password', default=None, help='Password of --pg-superuser, if the server asks for one.')
@click.option(
    '--pseudo-family',
    default=DEFAULT_FAMILY,
    show_default=True,
    help='Pseudopotential family label; the default is generated locally with ld1.x, others must be installed.',
)
@click.option('--pw-executable', default='pw.x', show_default=True, help='pw.x executable (name on PATH or path).')
@click.option(
    '--poll-interval',
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help='Seconds between scheduler polls of localhost (new computer: 1, for the short jobs of the demo and tests); '
    '10 suits a campaign of minute-long jobs (each poll costs CPU).',
)
@click.option(
    '--import-archive',
    'archive',
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help='Import this AiiDA archive (e.g. a campaign from another machine) before the computer and codes are set up, '
    'so that its own localhost, pw@localhost and python@localhost are kept and reused.',
)
@click.pass_context
def setup(
    ctx,
    profile_name,
    postgres,
    email,
    pg_host,
    pg_port,
    pg_superuser,
    pg_password,
    pseudo_family,
    pw_executable,
    poll_interval,
    archive,
):
    """Create the profile, the localhost computer, the pw and python codes and the pseudo family.

    Idempotent: what exists is left as it is, and a run that changes nothing says so. Subcommands set up single
    parts (see --help).
    """
    if ctx.invoked_subcommand is not None:
        return
    superuser = {'host': pg_host, 'port': pg_port, 'user': pg_superuser}
    if pg_password:
        superuser['password'] = pg_password
    try:
        results = run_setup(
            profile_name,
            postgres=postgres,
            email=email,
            postgres_superuser=superuser,
            pseudo_family=pseudo_family,
            pw_executable=pw_executable,
            poll_interval=poll_interval,
            archive=archive,
        )
    except SetupError as exception:
        raise click.ClickException(str(exception)) from None
    for result in results:
        click.echo(str(result))
    if any(result.changed for result in results):
        click.secho(f'Profile {profile_name!r} is set up.', fg='green')
    else:
        click.secho(f'Nothing changed: profile {profile_name!r} was already set up.', fg='green')


@setup.command('computer')
@click.argument('description_file', metavar='FILE.yaml')
@click.option(
    '-p',
    '--profile-name',
    default=None,
    help='AiiDA profile to add the computer to; default: the profile given to `setup -p`, the loaded one, or '
    f'{DEFAULT_PROFILE!r}.',
)
@click.option('--dry-run', is_flag=True, help='Only validate the file and show what would be set up; needs no profile.')
@click.pass_context
def computer(ctx, description_file, profile_name, dry_run):
    """Create a computer and its codes from a YAML description (templates in workflows/computers/).

    The whole file is validated before anything is created. Idempotent: a second run with the same file changes
    nothing and says so; settings such as prepend_text or the mpirun command are brought in line with the file.
    """
    from ..setup.cluster import load_description, setup_cluster

    try:
        description = load_description(description_file)
    except SetupError as exception:
        raise click.ClickException(str(exception)) from None
    if dry_run:
        click.echo(
            f'{description_file}: valid: computer {description.label} ({description.hostname}, '
            f'{description.transport}, {description.scheduler}), codes: '
            f'{", ".join(f"{code.label}@{description.label}" for code in description.codes) or "none"}'
        )
        return

    profile = load_profile_or_fail(_profile_name(ctx, profile_name))
    try:
        results = setup_cluster(description)
    except SetupError as exception:
        raise click.ClickException(str(exception)) from None
    for result in results:
        click.echo(str(result))
    if any(result.changed for result in results):
        click.secho(f'Computer {description.label!r} is set up in profile {profile!r}.', fg='green')
    else:
        click.secho(
            f'Nothing changed: computer {description.label!r} and its codes were already set up in profile '
            f'{profile!r}.',
            fg='green',
        )


def _profile_name(ctx: click.Context, profile_name: str | None) -> str:
    """The subcommand's -p, else the group's -p if given, else the loaded profile, else the plugin's default."""
    from click.core import ParameterSource

    if profile_name:
        return profile_name
    parent = ctx.parent
    if parent is not None and parent.get_parameter_source('profile_name') == ParameterSource.COMMANDLINE:
        return parent.params['profile_name']
    if profile_before_command(ctx):
        return profile_before_command(ctx)
    from aiida.manage import get_manager

    loaded = get_manager().get_profile()
    return loaded.name if loaded is not None else DEFAULT_PROFILE
