"""The ``aiida-polyhydride`` command line."""

from __future__ import annotations

import click

from .. import __version__
from .demo import demo
from .setup import setup


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(__version__, prog_name='aiida-polyhydride')
def cli() -> None:
    """Active-learning Allegro potentials and surface-melting MD of superhydrides, with AiiDA provenance."""


cli.add_command(setup)
cli.add_command(demo)
