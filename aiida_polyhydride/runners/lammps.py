"""LAMMPS for production MD with an Allegro committee: input generation, log/dump parsing, committee evaluation.

No aiida import (runs on compute nodes). LAMMPS must be built with pair_nequip_allegro (docs/how-to/lammps.md) and
member 0 compiled for it (``nequip-compile --mode aotinductor --target pair_allegro``); the input written here then
runs ``pair_style allegro`` with ``pair_coeff * * <model>.nequip.pt2 <species...>`` in metal units. The other
members are evaluated afterwards on the dumped frames (:func:`evaluate_committee`), so LAMMPS runs at the speed of one
model. ``pair='lj'`` swaps the model for a built-in Lennard-Jones pair style with the same input otherwise: for
checking the pipeline with a LAMMPS that has no pair_allegro (Debian's).

``python -m aiida_polyhydride.runners.lammps`` in a finished LAMMPS directory writes ``trajectory.extxyz`` and
``deviations.npz`` in the format of the ASE runner (runners/md.py), so both engines feed the same parser and selection.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from .md import InputError, committee_frame, validate_parameters

__all__ = (
    'BAR_TO_EV_PER_A3',
    'FILES',
    'THERMO_COLUMNS',
    'evaluate_committee',
    'lammps_input',
    'main',
    'read_dump',
    'read_frames',
    'read_thermo',
    'write_inputs',
)

FILES = {
    'input': 'in.lammps',
    'data': 'structure.data',
    'log': 'log.lammps',
    'dump': 'dump.lammpstrj',
    'parameters': 'lammps_input.json',
    'trajectory': 'trajectory.extxyz',
    'deviations': 'deviations.npz',
    'restart': 'checkpoint.restart',
}
#: thermo columns: LAMMPS keywords (metal units: ps, K, bar, eV, A^3, A) in this order; c_vir is the virial-only
#: pressure tensor (bar), from which the frames' stress is set (the kinetic part is not a model quantity)
THERMO_COLUMNS = (
    'step', 'time', 'temp', 'press', 'pe', 'ke', 'etotal', 'vol', 'lx', 'ly', 'lz', 'xy', 'xz', 'yz',
    'c_vir[1]', 'c_vir[2]', 'c_vir[3]', 'c_vir[4]', 'c_vir[5]', 'c_vir[6]',
)  # fmt: skip
DUMP_COLUMNS = ('id', 'type', 'element', 'x', 'y', 'z', 'fx', 'fy', 'fz')
BAR_TO_EV_PER_A3 = 1e5 / 1.602176634e-19 * 1e-30  # 1 bar = 1e5 Pa; 1 eV/A^3 = 1.602e11 Pa
#: md runner keys that have no meaning for LAMMPS: refused rather than silently ignored
_NOT_FOR_LAMMPS = ('min_distance', 'guard_every', 'sigma_f_failed', 'max_consecutive_failed')
_VOIGT_FROM_LAMMPS = (0, 1, 2, 5, 4, 3)  # LAMMPS pxx pyy pzz pxy pxz pyz -> ASE xx yy zz yz xz xy


def _fix_lines(parameters: dict) -> list[str]:
    """Integrator fixes for the runner's ensemble/thermostat/barostat in LAMMPS metal units."""
    t_start, t_end = parameters['temperature_K']
    tdamp_ps, pdamp_ps = parameters['tdamp_fs'] / 1000, parameters['pdamp_fs'] / 1000
    if parameters['ensemble'] == 'nvt':
        if parameters['thermostat'] == 'langevin':
            damp_ps = 1 / parameters['friction_per_fs'] / 1000
            return [
                'fix integrate all nve',
                f'fix thermostat all langevin {t_start} {t_end} {damp_ps:g} {parameters["seed"] + 1} zero yes',
            ]
        return [f'fix integrate all nvt temp {t_start} {t_end} {tdamp_ps:g}']
    pressure_bar = parameters['pressure_GPa'] * 1e4
    barostat = {
        'isotropic': f'iso {pressure_bar:g} {pressure_bar:g} {pdamp_ps:g}',
        'anisotropic': f'tri {pressure_bar:g} {pressure_bar:g} {pdamp_ps:g}',
        # only the slab normal is coupled: the lateral cell stays as built (cell vector c along z in LAMMPS)
        'normal': f'z {pressure_bar:g} {pressure_bar:g} {pdamp_ps:g}',
    }[parameters['barostat']]
    return [f'fix integrate all npt temp {t_start} {t_end} {tdamp_ps:g} {barostat}']


def lammps_input(parameters: dict, species: list[str], pair: str = 'allegro', model_file: str | None = None) -> str:
    """The LAMMPS input script for validated runner ``parameters`` (see :func:`write_inputs`)."""
    if parameters['ensemble'] == 'npt' and parameters['barostat'] == 'normal' and parameters['normal_axis'] != 2:
        raise InputError('normal_axis: LAMMPS puts the third cell vector along z; build the slab with its normal '
                         'along the third cell vector (normal_axis 2)')  # fmt: skip
    lines = [
        '# written by aiida_polyhydride.runners.lammps',
        'units metal',
        'atom_style atomic',
        'boundary p p p',
        'newton on',  # pair_allegro needs newton_pair on
        f'read_data {FILES["data"]}',
    ]
    if pair == 'allegro':
        if not model_file:
            raise InputError('model_file: pair allegro needs the compiled member-0 model (.nequip.pt2)')
        lines += ['pair_style allegro', f'pair_coeff * * {model_file} {" ".join(species)}']
    elif pair == 'lj':
        # a stable stand-in with minima near the Ca-H distances of the hydrides (H2 units ~0.75 A, Ca-H ~2.1 A)
        sigma = {'H': 0.7, 'Ca': 2.7}
        lines.append('pair_style lj/cut 6.0')
        for first, a in enumerate(species, 1):
            for second, b in enumerate(species[first - 1 :], first):
                pair_sigma = (sigma.get(a, 2.0) + sigma.get(b, 2.0)) / 2
                lines.append(f'pair_coeff {first} {second} 0.02 {pair_sigma:g} {min(2.5 * pair_sigma, 6.0):g}')
    else:
        raise InputError(f"pair: unknown pair {pair!r}; choose 'allegro' or 'lj'")
    n_steps, dump_every = parameters['n_steps'], parameters['dump_every']
    lines += [
        'neighbor 1.0 bin',
        f'timestep {parameters["timestep_fs"] / 1000:g}',
        f'velocity all create {parameters["temperature_K"][0]} {parameters["seed"] + 12345} dist gaussian mom yes',
        *_fix_lines(parameters),
        'compute vir all pressure NULL virial',
        f'thermo_style custom {" ".join(THERMO_COLUMNS)}',
        'thermo_modify format float %.10g',
        f'thermo {dump_every}',
        f'dump frames all custom {dump_every} {FILES["dump"]} {" ".join(DUMP_COLUMNS)}',
        f'dump_modify frames element {" ".join(species)} sort id format float %.10g',
        f'restart {dump_every * parameters["checkpoint_every"]} {FILES["restart"]}',
    ]
    if parameters['max_walltime_s']:
        # LAMMPS stops cleanly at the timeout (checked every dump) and writes the restart below
        seconds = int(parameters['max_walltime_s'])
        lines += [f'timer timeout {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d} every {dump_every}']
    lines += [f'run {n_steps}', f'write_restart {FILES["restart"]}']
    return '\n'.join(lines) + '\n'


def write_inputs(
    directory: str | Path, atoms, parameters: dict, pair: str = 'allegro', model_file: str | None = None
) -> dict:
    """Write ``in.lammps`` and ``structure.data`` for ``atoms`` with runner-style ``parameters`` (runners/md.py keys:
    ensemble, thermostat, barostat, temperature_K (ramps are linear), pressure_GPa, timestep_fs, n_steps, dump_every,
    checkpoint_every, seed, tdamp_fs, pdamp_fs, friction_per_fs, max_walltime_s); returns the validated parameters
    with the species order (LAMMPS type i is ``species[i - 1]``)."""
    from ase.io.lammpsdata import write_lammps_data

    refused = sorted(set(parameters) & set(_NOT_FOR_LAMMPS))
    if refused:
        raise InputError(f"{refused}: the ASE runner's blow-up guard has no LAMMPS equivalent here; remove them")
    parameters = validate_parameters({**parameters, 'models': [{'file': '-', 'sha256': '-'}]}, check_files=False)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    species = sorted(set(atoms.get_chemical_symbols()), key=lambda symbol: (symbol == 'H', symbol))  # metals, H
    with open(directory / FILES['data'], 'w') as handle:
        # a full-cell barostat needs a triclinic box even for an orthogonal cell
        skew = parameters['ensemble'] == 'npt' and parameters['barostat'] == 'anisotropic'
        write_lammps_data(
            handle,
            atoms,
            specorder=species,
            masses=True,
            units='metal',
            atom_style='atomic',
            force_skew=skew,
            reduce_cell=True,  # LAMMPS refuses tilts above half a box length (e.g. primitive body-centred cells)
        )
    (directory / FILES['input']).write_text(lammps_input(parameters, species, pair, model_file))
    return {**parameters, 'species': species}


# --- reading -----------------------------------------------------------------------------------------------------


def read_thermo(log: str | Path) -> dict[str, np.ndarray]:
    """The thermo table(s) of a LAMMPS log written by :func:`lammps_input`, as arrays keyed by
    :data:`THERMO_COLUMNS`. Rows of a step printed twice (end of one run, start of the next) are kept once; lines
    that are not rows (warnings) are skipped. ValueError when the log holds no such table."""
    rows, in_table = {}, False
    for line in Path(log).read_text().splitlines():
        words = line.split()
        if words[:1] == ['Step']:
            in_table = len(words) == len(THERMO_COLUMNS)
        elif line.startswith('Loop time'):
            in_table = False
        elif in_table and len(words) == len(THERMO_COLUMNS):
            try:
                values = [float(word) for word in words]
            except ValueError:
                continue
            rows[int(values[0])] = values
    if not rows:
        raise ValueError(f'{log}: no thermo table with the columns {THERMO_COLUMNS}')
    table = np.array([rows[step] for step in sorted(rows)])
    return {name: table[:, index] for index, name in enumerate(THERMO_COLUMNS)}


def read_dump(dump: str | Path) -> list:
    """Frames of a custom dump with element and force columns (ASE's reader: positions, cell, forces in eV/A)."""
    from ase.io import read

    return read(dump, index=':', format='lammps-dump-text')


def read_frames(directory: str | Path) -> list:
    """Dumped frames with energy (pe), forces, virial stress (eV/A^3, ASE sign) and the thermo values in ``info``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    directory = Path(directory)
    thermo = read_thermo(directory / FILES['log'])
    index_of_step = {int(step): row for row, step in enumerate(thermo['step'])}
    frames = []
    for atoms in read_dump(directory / FILES['dump']):
        step = int(atoms.info['timestep'])
        if step not in index_of_step:
            raise ValueError(f'{FILES["dump"]}: step {step} has no thermo row in {FILES["log"]}')
        row = index_of_step[step]
        virial_bar = np.array([thermo[f'c_vir[{k}]'][row] for k in range(1, 7)])
        stress = -virial_bar[list(_VOIGT_FROM_LAMMPS)] * BAR_TO_EV_PER_A3
        forces = atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=thermo['pe'][row], forces=forces, stress=stress)
        atoms.info = {
            'step': step,
            'time_fs': thermo['time'][row] * 1000,
            'temperature_K': thermo['temp'][row],
            'pressure_GPa': thermo['press'][row] * 1e-4,
            'volume': thermo['vol'][row],
        }
        frames.append(atoms)
    return frames


def evaluate_committee(frames: list, members: list) -> list[dict]:
    """Per frame: member 0's energy/forces/stress (from LAMMPS, the frame's calculator) and those of ``members``
    (ASE calculators of members 1..N-1), with the deviations of :func:`.md.committee_frame`."""
    return [committee_frame(frame, [frame.calc, *members]) for frame in frames]


def main(directory: str | Path = '.') -> int:
    """After LAMMPS: committee on the dumped frames -> ``trajectory.extxyz`` + ``deviations.npz`` (runner format).

    ``lammps_input.json`` names the members to evaluate (``models``: [{file, sha256}, ...], member 0 first, as for the
    ASE runner) and the ``device``.
    """
    import os

    from ase.io import write

    from .md import _RECORD_KEYS, SharedModelInput, _write_deviations, member_calculator

    directory = Path(directory).resolve()
    settings = json.loads((directory / FILES['parameters']).read_text())
    cache = Path(os.environ.get('AIIDA_POLYHYDRIDE_CACHE') or directory / 'model_cache')
    parameters, shared_input = {'device': settings.get('device', 'cpu'), 'compile_model': True}, SharedModelInput()
    members = [member_calculator(directory / model['file'], model['sha256'], parameters, cache, shared_input)
               for model in settings['models'][1:]]  # fmt: skip
    frames = read_frames(directory)
    records = []
    trajectory = directory / FILES['trajectory']
    trajectory.unlink(missing_ok=True)
    for frame, committee in zip(frames, evaluate_committee(frames, members), strict=True):
        record = {**frame.info, 'target_temperature_K': math.nan, 'energy': committee['energies'][0], **committee}
        records.append(record)
        frame.info = {key: record[key] for key in _RECORD_KEYS if key != 'energy'}
        frame.info['model_energies'] = committee['energies']
        write(trajectory, frame, format='extxyz', append=True)
    _write_deviations(directory / FILES['deviations'], records, len(settings['models']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
