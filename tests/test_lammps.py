"""LAMMPS production route (runners/lammps.py): the input a pair_allegro LAMMPS runs, and the parser checked on the
output of a real LAMMPS run here (Debian's lmp, which has no pair_allegro: the same input with pair lj/cut), then the
committee evaluated on the dumped frames with the session's real models."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import units

from aiida_polyhydride.runners import lammps
from aiida_polyhydride.runners.md import InputError
from aiida_polyhydride.structures import bulk_phase, primitive_cell, rattle

NVT = {'ensemble': 'nvt', 'thermostat': 'nose_hoover_chain', 'temperature_K': 300, 'timestep_fs': 0.5}


def _structure():
    """40 atoms of CaH4 from the body-centred primitive cell: a triclinic box LAMMPS only accepts reduced."""
    return rattle(primitive_cell(bulk_phase('MH4-I4mmm', 'Ca')) * (2, 2, 2), stdev=0.02, seed=0)


def _run_lammps(directory: Path) -> None:
    executable = shutil.which('lmp')
    assert executable, 'Debian lammps (`lmp`) is not installed: run .ci/system-packages.sh'
    result = subprocess.run(
        [executable, '-in', lammps.FILES['input']],
        cwd=directory, capture_output=True, text=True, timeout=300, check=False,
        env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope='module')
def npt_run(tmp_path_factory):
    """300 NPT steps at 5 GPa (the cell moves), thermo and dump every 20 steps."""
    directory = tmp_path_factory.mktemp('lammps_npt')
    atoms = _structure()
    parameters = {**NVT, 'ensemble': 'npt', 'pressure_GPa': 5.0, 'n_steps': 300, 'dump_every': 20, 'pdamp_fs': 250}
    written = lammps.write_inputs(directory, atoms, parameters, pair='lj')
    _run_lammps(directory)
    return directory, atoms, written


def test_parsed_frames_match_lammps_numbers(npt_run):
    directory, atoms, written = npt_run
    assert written['species'] == ['Ca', 'H']
    thermo = lammps.read_thermo(directory / lammps.FILES['log'])
    frames = lammps.read_frames(directory)
    assert len(frames) == len(thermo['step']) == 300 // 20 + 1
    assert [frame.info['step'] for frame in frames] == list(range(0, 301, 20))
    assert np.allclose([frame.info['time_fs'] for frame in frames], np.arange(0, 301, 20) * 0.5)
    assert len({round(frame.get_volume(), 6) for frame in frames}) > 1  # the barostat moved the cell
    for row, frame in enumerate(frames):
        lx, ly, lz, xy, xz, yz = (thermo[key][row] for key in ('lx', 'ly', 'lz', 'xy', 'xz', 'yz'))
        assert np.allclose(frame.cell.array, [[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]], atol=1e-6)
        assert frame.get_volume() == pytest.approx(thermo['vol'][row], rel=1e-8)
        assert frame.get_potential_energy() == pytest.approx(thermo['pe'][row], rel=1e-9)
        assert frame.get_chemical_symbols() == atoms.get_chemical_symbols()  # ids sorted, elements from the dump
        forces = frame.get_forces()
        assert forces.shape == (40, 3) and np.abs(forces).max() > 0
        assert np.allclose(forces.sum(axis=0), 0, atol=1e-6)  # Newton's third law within the dump's precision
        # LAMMPS's pressure = virial part (the frame's stress) + kinetic part N_dof kB T / 3V, N_dof = 3N - 3
        kinetic = (3 * len(frame) - 3) * units.kB * thermo['temp'][row] / (3 * thermo['vol'][row])
        pressure = -np.trace(frame.get_stress(voigt=False)) / 3 + kinetic
        assert pressure / units.GPa == pytest.approx(frame.info['pressure_GPa'], rel=1e-6, abs=1e-6)
    # step 0 is the input structure (rotated into LAMMPS's frame and its cell reduced: compare distances)
    assert np.allclose(np.sort(frames[0].get_all_distances(mic=True), axis=None),
                       np.sort(atoms.get_all_distances(mic=True), axis=None), atol=1e-6)  # fmt: skip


def test_input_for_pair_allegro_and_integrators(tmp_path):
    atoms = rattle(bulk_phase('MH4-I4mmm', 'Ca'), stdev=0.02, seed=1)  # conventional, orthogonal
    nvt = {**NVT, 'temperature_K': [300, 1500], 'n_steps': 1000, 'dump_every': 10, 'max_walltime_s': 3725}
    lammps.write_inputs(tmp_path, atoms, nvt, model_file='member_0.nequip.pt2')
    script = (tmp_path / lammps.FILES['input']).read_text().splitlines()
    assert 'pair_style allegro' in script and 'pair_coeff * * member_0.nequip.pt2 Ca H' in script
    assert 'newton on' in script and 'units metal' in script
    assert 'fix integrate all nvt temp 300.0 1500.0 0.05' in script  # ramp; tdamp 100 dt = 50 fs = 0.05 ps
    assert 'timer timeout 01:02:05 every 10' in script and script[-2:] == [
        'run 1000',
        'write_restart checkpoint.restart',
    ]
    assert any(line.startswith('dump frames all custom 10 dump.lammpstrj id type element x y z fx fy fz')
               for line in script)  # fmt: skip

    cases = {
        ('npt', 'isotropic'): 'fix integrate all npt temp 300.0 300.0 0.05 iso 400000 400000 0.5',
        ('npt', 'normal'): 'fix integrate all npt temp 300.0 300.0 0.05 z 400000 400000 0.5',
        ('npt', 'anisotropic'): 'fix integrate all npt temp 300.0 300.0 0.05 tri 400000 400000 0.5',
    }
    for (ensemble, barostat), line in cases.items():
        parameters = {**NVT, 'ensemble': ensemble, 'barostat': barostat, 'pressure_GPa': 40, 'n_steps': 10}
        lammps.write_inputs(tmp_path / barostat, atoms, parameters, model_file='m.pt2')
        assert line in (tmp_path / barostat / lammps.FILES['input']).read_text().splitlines(), barostat
    langevin = {**NVT, 'thermostat': 'langevin', 'n_steps': 10, 'seed': 4}
    lammps.write_inputs(tmp_path / 'langevin', atoms, langevin, model_file='m.pt2')
    script = (tmp_path / 'langevin' / lammps.FILES['input']).read_text()
    assert 'fix integrate all nve' in script and 'fix thermostat all langevin 300.0 300.0 0.1 5 zero yes' in script


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'sigma_f_failed': 0.5}, "['sigma_f_failed']: the ASE runner's blow-up guard has no LAMMPS equivalent"),
        ({'ensemble': 'nve'}, "ensemble: unknown ensemble 'nve'"),
        ({'timestep_fs': 0}, 'timestep_fs: must be positive'),
    ],
)
def test_bad_lammps_input_is_named(tmp_path, change, message):
    with pytest.raises(InputError, match=message.replace('[', r'\[').replace(']', r'\]')):
        lammps.write_inputs(tmp_path, _structure(), {**NVT, 'n_steps': 10, **change}, model_file='m.pt2')
    with pytest.raises(InputError, match='model_file'):
        lammps.write_inputs(tmp_path, _structure(), {**NVT, 'n_steps': 10})
    with pytest.raises(InputError, match="unknown pair 'eam'"):
        lammps.write_inputs(tmp_path, _structure(), {**NVT, 'n_steps': 10}, pair='eam')


def test_committee_on_the_dumped_frames(npt_run, compiled_committee, model_cache, tmp_path, monkeypatch):
    """``python -m aiida_polyhydride.runners.lammps`` after LAMMPS: the other members on every dumped frame, written
    in the ASE runner's format (the MD parser reads it). Member 0 is LAMMPS's pair style (here lj/cut), so the
    deviation from a real Allegro member is positive; a member against its own predictions gives exactly zero."""
    from aiida_polyhydride.analysis.frames import frames_from_extxyz
    from aiida_polyhydride.parsers.md import trajectory_node
    from aiida_polyhydride.runners.compiled_models import compiled_model

    source, _, _ = npt_run
    directory = tmp_path / 'run'
    shutil.copytree(source, directory)
    models = []
    for key in ('member_0', 'member_1'):
        shutil.copy(compiled_committee[key]['path'], directory / f'{key}.nequip.zip')
        models.append({'file': f'{key}.nequip.zip', 'sha256': compiled_committee[key]['sha256']})
    # member 0 is what LAMMPS ran (here lj/cut, in production member_0 through pair_allegro); the others are evaluated
    (directory / lammps.FILES['parameters']).write_text(json.dumps({'models': models}))
    monkeypatch.setenv('AIIDA_POLYHYDRIDE_CACHE', str(model_cache))
    assert lammps.main(directory) == 0
    deviations = np.load(directory / lammps.FILES['deviations'])
    assert deviations['step'].tolist() == list(range(0, 301, 20))
    assert deviations['model_energies'].shape == (16, 2)
    assert np.allclose(deviations['model_energies'][:, 0], lammps.read_thermo(directory / 'log.lammps')['pe'])
    assert np.all(deviations['sigma_f'] > 0)
    trajectory = trajectory_node(frames_from_extxyz((directory / lammps.FILES['trajectory']).read_text()))
    assert list(trajectory.get_stepids()) == list(range(0, 301, 20))
    assert np.allclose(trajectory.get_array('sigma_f'), deviations['sigma_f'])

    # zero when the frames carry member 1's own predictions and member 1 is the other member
    from nequip.integrations.ase import NequIPCalculator

    path = compiled_model(directory / 'member_1.nequip.zip', models[1]['sha256'], cache=model_cache)
    member = NequIPCalculator.from_compiled_model(str(path), device='cpu', chemical_species_to_atom_type_map=True)
    frames = lammps.read_frames(directory)[:3]
    for frame in frames:
        frame.calc = member
    committee = lammps.evaluate_committee(frames, [member])
    assert all(entry['sigma_f'] == 0 and entry['sigma_e'] == 0 for entry in committee)
