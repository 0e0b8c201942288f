"""The localhost computer and the codes the plugin runs on it: pw.x and the Python of the compute-node runners."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from aiida import orm
from aiida.common.exceptions import NotExistent

from . import SetupError, SetupResult

LOCALHOST = 'localhost'
PW_CODE = 'pw'
PYTHON_CODE = 'python'

# Open MPI refuses to run as root and to start more ranks than cores unless told; both are normal here. It also pins
# rank 0 of every mpirun to core 0, so jobs running side by side (LabelWorkChain's max_concurrent) shared one core:
# two 1-rank pw.x at once took 4.8 s each against 2.4 s alone; unpinned, 2.8 s.
_ROOT_MPIRUN = ['mpirun', '--allow-run-as-root', '--oversubscribe', '--bind-to', 'none', '-np', '{tot_num_mpiprocs}']
_USER_MPIRUN = ['mpirun', '--oversubscribe', '--bind-to', 'none', '-np', '{tot_num_mpiprocs}']
# what setups before --bind-to none wrote: a localhost still on one of these is brought to the current command
_PINNING_MPIRUN = [
    ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', '{tot_num_mpiprocs}'],
    ['mpirun', '--oversubscribe', '-np', '{tot_num_mpiprocs}'],
]


def _mpirun_command() -> list[str]:
    return _ROOT_MPIRUN if os.geteuid() == 0 else _USER_MPIRUN


#: seconds between two scheduler polls of a new localhost: short, for the second-long jobs of the demo and tests
DEFAULT_POLL_INTERVAL = 1.0


def setup_localhost(
    label: str = LOCALHOST, workdir: str | Path | None = None, poll_interval: float | None = None
) -> tuple[orm.Computer, SetupResult]:
    """Create and configure the ``core.local`` + ``core.direct`` computer ``label`` unless it exists; an existing one is
    configured if it is not, and moved off the mpirun command of earlier versions, which pinned every job to core 0.

    ``poll_interval``: seconds between two scheduler polls (new computer: :data:`DEFAULT_POLL_INTERVAL`). Each poll
    costs a ``ps`` and a daemon wake-up: at 1 s a daemon following a campaign's 10-minute pw.x jobs used about a fifth
    of a core; 10 s suits jobs of minutes.
    """
    if poll_interval is not None and not poll_interval > 0:
        raise SetupError(f'poll interval must be a positive number of seconds, got {poll_interval}')
    try:
        computer = orm.load_computer(label)
    except NotExistent:
        pass
    else:
        changes = []
        if computer.get_mpirun_command() in _PINNING_MPIRUN:
            computer.set_mpirun_command(_mpirun_command())
            changes.append('mpirun no longer pins every job to core 0 (--bind-to none)')
        if not computer.is_configured:
            computer.configure(safe_interval=0)
            changes.append('configured the existing computer')
        if poll_interval is not None and computer.get_minimum_job_poll_interval() != poll_interval:
            computer.set_minimum_job_poll_interval(poll_interval)
            changes.append(f'scheduler poll interval {poll_interval:g} s')
        if changes:
            return computer, SetupResult('computer', True, f'{label}: {"; ".join(changes)}')
        return computer, SetupResult(
            'computer', False, f'{label} ({computer.transport_type}, {computer.scheduler_type})'
        )

    if workdir is None:
        from aiida.manage.configuration import get_config, get_profile

        workdir = Path(get_config().dirpath) / 'scratch' / get_profile().name
    computer = orm.Computer(
        label=label,
        hostname='localhost',
        description='This machine, set up by aiida-polyhydride',
        transport_type='core.local',
        scheduler_type='core.direct',
        workdir=str(workdir),
    )
    computer.set_mpirun_command(_mpirun_command())
    computer.set_default_mpiprocs_per_machine(1)
    # One OpenMP thread per MPI rank: threaded BLAS under mpirun oversubscribes the cores.
    computer.set_prepend_text('export OMP_NUM_THREADS=1')
    computer.store()
    computer.configure(safe_interval=0)
    computer.set_minimum_job_poll_interval(DEFAULT_POLL_INTERVAL if poll_interval is None else poll_interval)
    return computer, SetupResult('computer', True, f'{label} (core.local, core.direct, workdir {workdir})')


def setup_code(
    computer: orm.Computer,
    label: str,
    executable: str,
    default_calc_job_plugin: str | None = None,
    description: str = '',
    *,
    prepend_text: str = '',
    append_text: str = '',
    use_double_quotes: bool = False,
    with_mpi: bool | None = None,
    resolve: bool = True,
) -> tuple[orm.InstalledCode, SetupResult]:
    """Create the installed code ``label@computer`` for ``executable`` unless it exists.

    With ``resolve`` (this machine), ``executable`` is a name on PATH or a path and must exist here; without (a remote
    computer), it is the absolute path on that computer and is stored as given.
    """
    full_label = f'{label}@{computer.label}'
    try:
        code = orm.load_code(full_label)
    except NotExistent:
        pass
    else:
        return code, SetupResult('code', False, f'{full_label} -> {code.filepath_executable}')

    path = shutil.which(executable) if resolve else executable
    if path is None:
        raise SetupError(f'executable {executable!r} for code {full_label} not found on PATH: install it first.')
    code = orm.InstalledCode(
        computer=computer,
        filepath_executable=path,
        label=label,
        default_calc_job_plugin=default_calc_job_plugin,
        description=description,
        prepend_text=prepend_text,
        append_text=append_text,
        use_double_quotes=use_double_quotes,
        with_mpi=with_mpi,
    ).store()
    return code, SetupResult('code', True, f'{full_label} -> {path}')


def setup_codes(computer: orm.Computer, pw_executable: str = 'pw.x') -> list[SetupResult]:
    """pw.x for aiida-quantumespresso and this environment's Python for the compute-node runners."""
    _, pw = setup_code(computer, PW_CODE, pw_executable, 'quantumespresso.pw', 'Quantum ESPRESSO pw.x')
    _, python = setup_code(
        computer, PYTHON_CODE, sys.executable, None, 'Python with aiida-polyhydride runners (torch, nequip, ase)'
    )
    return [pw, python]
