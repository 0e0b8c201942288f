"""The ``aiida-polyhydride`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The daemon this command may start runs `verdi`, and the workers run nequip's console scripts: both sit next to
# this interpreter, also when its environment is not activated (aiida looks verdi up on PATH at import time).
os.environ['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')])

import warnings

import click

from .. import __version__

with warnings.catch_warnings():
    # The first command in a fresh account creates the AiiDA config folder (on importing aiida), and aiida says so
    # with a UserWarning; the command's own message is the one line that user needs (e.g. no profile yet).
    warnings.filterwarnings('ignore', message='Creating AiiDA configuration folder', category=UserWarning)
    from .demo import demo
    from .export import export
    from .launch import launch
    from .potentials import potentials
    from .setup import setup
    from .status import status


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(__version__, prog_name='aiida-polyhydride')
@click.option(
    '-p',
    '--profile',
    'profile_name',
    default=None,
    help='AiiDA profile of the command (as verdi -p); the same as -p after the command, which wins.',
)
def cli(profile_name: str | None) -> None:
    """Active-learning Allegro potentials and surface-melting MD of superhydrides, with AiiDA provenance."""


cli.add_command(setup)
cli.add_command(launch)
cli.add_command(status)
cli.add_command(export)
cli.add_command(demo)
cli.add_command(potentials)
