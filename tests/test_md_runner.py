"""The MD runner (runners/md.py) as a CalcJob runs it: ``python -m aiida_polyhydride.runners.md`` in a directory,
with the session's two tiny Allegro members (``tiny_committee``, trained on real pw.x labels) compiled once into the
session's model cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

from aiida_polyhydride.runners import md as md_runner
from aiida_polyhydride.runners.compiled_models import file_sha256
from aiida_polyhydride.structures import bulk_phase, primitive_cell, rattle

RUNNER_MODULE = 'aiida_polyhydride.runners.md'
REPOSITORY = Path(md_runner.__file__).parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope='module')
def models(compiled_committee, model_cache):
    """The committee's packages ('a': member_0, 'b': member_1) and the session's compile cache holding both."""
    return {'cache': model_cache, 'a': compiled_committee['member_0'], 'b': compiled_committee['member_1']}


def _structure(repeat=(2, 1, 1), stdev=0.05, seed=0):
    """A rattled 2x1x1 primitive CaH4 (I4/mmm, 10 atoms)."""
    return rattle(primitive_cell(bulk_phase('MH4-I4mmm', 'Ca')).repeat(repeat), stdev=stdev, seed=seed)


def _prepare(directory: Path, models: dict, parameters: dict, members=('a',), atoms=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, name in enumerate(members):
        filename = f'model_{index}.nequip.zip'
        shutil.copy(models[name]['path'], directory / filename)
        entries.append({'file': filename, 'sha256': models[name]['sha256']})
    write(directory / 'initial.extxyz', atoms if atoms is not None else _structure())
    (directory / 'md_input.json').write_text(json.dumps({'models': entries, **parameters}, indent=1))
    return directory


def _environment(models: dict) -> dict:
    return {
        **os.environ,
        'PYTHONPATH': str(REPOSITORY),
        'AIIDA_POLYHYDRIDE_CACHE': str(models['cache']),
        'OMP_NUM_THREADS': '1',
    }


def _run(directory: Path, models: dict) -> tuple[int, dict]:
    """The runner in this process (importing torch and nequip once per module saves ~10 s a run)."""
    previous = os.environ.get('AIIDA_POLYHYDRIDE_CACHE')
    os.environ['AIIDA_POLYHYDRIDE_CACHE'] = str(models['cache'])
    try:
        code = md_runner.main(directory)
    finally:
        if previous is None:
            os.environ.pop('AIIDA_POLYHYDRIDE_CACHE')
        else:
            os.environ['AIIDA_POLYHYDRIDE_CACHE'] = previous
    return code, json.loads((directory / 'result.json').read_text())


def _run_script(directory: Path, env: dict, timeout: int = 300) -> tuple[int, dict, str]:
    """``python -m aiida_polyhydride.runners.md`` in ``directory``, as the CalcJob runs it."""
    result = subprocess.run(
        ['nice', sys.executable, '-m', RUNNER_MODULE],
        cwd=directory, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return result.returncode, json.loads((directory / 'result.json').read_text()), result.stderr


@pytest.fixture
def guard_searches(monkeypatch):
    """How often ASE's neighbour search ran: the distance guard's fallback when the frame's model input is missing."""
    import ase.neighborlist

    count = {'calls': 0}
    search = ase.neighborlist.neighbor_list

    def counted(*args, **kwargs):
        count['calls'] += 1
        return search(*args, **kwargs)

    monkeypatch.setattr(ase.neighborlist, 'neighbor_list', counted)
    return count


NVT = {
    'ensemble': 'nvt', 'temperature_K': 1000, 'timestep_fs': 0.5, 'n_steps': 40, 'dump_every': 10, 'seed': 3,
    'num_threads': 1,
}  # fmt: skip


def test_nvt_run_and_committee_deviations(models, tmp_path, guard_searches):
    """NVT Langevin: status ok, n_steps / dump_every + 1 dumps, finite energies; two different models disagree; the
    distance guard of every step read the model's pairs of the step's frame (no search of its own)."""
    directory = _prepare(tmp_path / 'nvt', models, NVT, members=('a', 'b'))
    code, result = _run(directory, models)
    assert code == 0, result
    assert guard_searches['calls'] == 0
    assert result['status'] == 'ok' and result['reason'] is None
    assert result['n_steps_done'] == 40 and result['n_dumps'] == 5 and result['integrator'] == 'Langevin'
    assert result['timings']['atom_steps_per_s'] > 0
    frames = read(directory / 'trajectory.extxyz', index=':')
    assert [frame.info['step'] for frame in frames] == [0, 10, 20, 30, 40]
    assert [frame.info['time_fs'] for frame in frames] == [0, 5, 10, 15, 20]
    energies = [frame.get_potential_energy() for frame in frames]
    assert np.all(np.isfinite(energies))
    assert all(frame.get_forces().shape == (10, 3) for frame in frames)
    for key in ('temperature_K', 'pressure_GPa', 'volume', 'sigma_f', 'sigma_e', 'sigma_v'):
        assert all(np.isfinite(frame.info[key]) for frame in frames), key
    deviations = np.load(directory / 'deviations.npz')
    assert deviations['step'].tolist() == [0, 10, 20, 30, 40]
    assert deviations['model_energies'].shape == (5, 2)
    assert np.allclose(deviations['energy'], energies)
    assert np.allclose(deviations['model_energies'][:, 0], energies)
    for key in ('sigma_f', 'sigma_e', 'sigma_v'):
        assert np.all(deviations[key] > 0), key
    assert np.allclose(deviations['sigma_f'], [frame.info['sigma_f'] for frame in frames])
    # started from a Maxwell-Boltzmann distribution at 1000 K with no centre-of-mass motion
    assert 200 < deviations['temperature_K'][0] < 3000


def test_eager_members_predict_what_the_compiled_ones_do(models):
    """compile_model false loads the package as it is: same energies, forces and stress as the compiled model."""
    atoms = _structure()
    results = {}
    for compile_model in (True, False):
        parameters = {'device': 'cpu', 'compile_model': compile_model}
        calculator = md_runner.member_calculator(
            Path(models['a']['path']), models['a']['sha256'], parameters, models['cache']
        )
        copy = atoms.copy()
        copy.calc = calculator
        results[compile_model] = (copy.get_potential_energy(), copy.get_forces(), copy.get_stress())
    (energy_c, forces_c, stress_c), (energy_e, forces_e, stress_e) = results[True], results[False]
    assert energy_e == pytest.approx(energy_c, abs=1e-4)
    assert np.allclose(forces_e, forces_c, atol=1e-4)
    assert np.allclose(stress_e, stress_c, atol=1e-5)
    assert np.abs(forces_c).max() > 1e-3  # a rattled cell: the comparison is not of zeros


@pytest.mark.parametrize('compile_model', [True, False], ids=['compiled', 'eager'])
def test_members_share_the_model_input_of_a_frame(models, compile_model):
    """Members given one SharedModelInput build a frame's neighbour list once and predict exactly what members
    building their own do; a moved atom is a new frame."""
    parameters = {'device': 'cpu', 'compile_model': compile_model}

    def committee(shared_input):
        return [
            md_runner.member_calculator(
                Path(models[name]['path']), models[name]['sha256'], parameters, models['cache'], shared_input
            )
            for name in ('a', 'b')
        ]

    shared_input = md_runner.SharedModelInput()
    shared, independent = committee(shared_input), committee(None)
    atoms = _structure()
    for moved in (False, True):
        if moved:
            atoms.positions[0] += 0.01
        results = []
        for members in (shared, independent):
            copy = atoms.copy()
            copy.calc = members[0]
            results.append(md_runner.committee_frame(copy, members))
        assert shared_input.n_built == 1 + moved
        for key in ('energies', 'sigma_f', 'sigma_e', 'sigma_v'):
            assert np.array_equal(results[0][key], results[1][key]), key
        assert results[0]['sigma_f'] > 0  # two different members: the comparison is not of zeros


def test_distance_guard_reads_the_model_neighbour_list(models):
    """The guard's pairs from the frame's model input give what a search of the frame gives (the closest pair of
    each class, its distance and atoms); a moved frame, or a floor beyond the model's cutoff, gets no pairs."""
    parameters = {'device': 'cpu', 'compile_model': True}
    shared_input = md_runner.SharedModelInput()
    atoms = _structure(repeat=(2, 2, 1), stdev=0.1, seed=3)
    atoms.calc = md_runner.member_calculator(
        Path(models['a']['path']), models['a']['sha256'], parameters, models['cache'], shared_input
    )
    atoms.get_forces()
    neighbours = shared_input.neighbours(atoms, 2.5)
    messages = []
    for floors in ({'H-H': 0.35, 'M-H': 0.8, 'M-M': 1.5}, {'H-H': 0.9}, {'M-H': 2.5}, {'M-M': 3.0}):
        pairs = shared_input.neighbours(atoms, max(floors.values()))
        assert pairs is not None  # within the model's cutoff: the guard reads the model's pairs
        with_model = md_runner.guard_distances(atoms, floors, pairs)
        assert with_model == md_runner.guard_distances(atoms, floors)
        messages.append(with_model)
    assert messages[0] is None
    assert [message.split(' distance')[0] for message in messages[1:]] == ['H-H', 'M-H', 'M-M']
    assert len(neighbours[0]) > 0 and neighbours[2].max() < 2.5
    assert shared_input.neighbours(atoms, 1000.0) is None  # beyond the model's cutoff: the guard searches
    atoms.positions[0] += 0.01
    assert shared_input.neighbours(atoms, 2.5) is None  # another frame: its model input is not built yet


def test_cpu_models_are_compiled_with_serial_kernels(models):
    """The session's compiled members hold AOTInductor kernels written for one thread: no OpenMP region and no atomic
    add, which nequip-compile writes by default on this two-core machine (kernels that run ~1.8x slower)."""
    compiled = sorted((models['cache'] / 'compiled').glob('*-cpu-t1-*.nequip.pt2'))
    assert len(compiled) >= 2
    for path in compiled:
        with zipfile.ZipFile(path) as archive:
            kernels = [archive.read(name).decode() for name in archive.namelist() if name.endswith('.kernel.cpp')]
        assert kernels, path
        assert not any('#pragma omp' in kernel or 'atomic_add' in kernel for kernel in kernels), path


def test_runner_keeps_freed_memory():
    """glibc (this machine's C library) accepts the allocator settings the runner makes before the models run."""
    assert md_runner.keep_freed_memory()


def test_identical_members_give_zero_deviation(models, tmp_path):
    """Members from the same package predict bit for bit the same: zero deviation (exactly, for two members; to
    rounding of the committee mean for three)."""
    parameters = {**NVT, 'n_steps': 10, 'dump_every': 5}
    for members, tolerance in ((('a', 'a'), 0.0), (('a', 'a', 'a'), 1e-12)):
        directory = _prepare(tmp_path / str(len(members)), models, parameters, members=members)
        code, result = _run(directory, models)
        assert code == 0, result
        deviations = np.load(directory / 'deviations.npz')
        assert deviations['model_energies'].shape == (3, len(members))
        assert np.all(deviations['model_energies'] == deviations['model_energies'][:, :1])
        for key in ('sigma_f', 'sigma_e', 'sigma_v'):
            assert np.all(np.abs(deviations[key]) <= tolerance), (key, members)


def _mean_volume(directory: Path, models: dict, pressure: float) -> float:
    parameters = {
        'ensemble': 'npt',
        'barostat': 'isotropic',
        'pressure_GPa': pressure,
        'temperature_K': 300,
        'timestep_fs': 0.5,
        'n_steps': 200,
        'dump_every': 10,
        'pdamp_fs': 25,
        'tdamp_fs': 25,
    }
    _prepare(directory, models, parameters)
    code, result = _run(directory, models)
    assert code == 0, result
    assert result['integrator'] == 'IsotropicMTKNPT'
    deviations = np.load(directory / 'deviations.npz')
    assert np.all(np.isnan(deviations['sigma_f']))  # one member: no committee deviation
    return float(deviations['volume'][10:].mean())


def test_npt_volume_responds_to_pressure(models, tmp_path, guard_searches):
    low, high = _mean_volume(tmp_path / 'low', models, 0.1), _mean_volume(tmp_path / 'high', models, 100.0)
    assert guard_searches['calls'] == 0  # the MTK step's frame, cell included, is the one the model saw last
    initial = read(tmp_path / 'low' / 'initial.extxyz').get_volume()
    assert high < 0.8 * low and high < initial, (high, low, initial)


def test_slab_barostat_keeps_lateral_cell(models, tmp_path):
    """npt + barostat 'normal' (MaskedMTKNPT): only the cell vector along the normal changes."""
    parameters = {
        'ensemble': 'npt',
        'barostat': 'normal',
        'normal_axis': 2,
        'pressure_GPa': 100.0,
        'temperature_K': [300, 600],
        'timestep_fs': 0.5,
        'n_steps': 60,
        'dump_every': 20,
        'pdamp_fs': 25,
        'tdamp_fs': 25,
    }
    atoms = rattle(bulk_phase('MH4-I4mmm', 'Ca'), stdev=0.05, seed=1)  # conventional, orthogonal: 10 atoms
    directory = _prepare(tmp_path / 'slab', models, parameters, atoms=atoms)
    code, result = _run(directory, models)
    assert code == 0, result
    assert result['integrator'] == 'MaskedMTKNPT'
    frames = read(directory / 'trajectory.extxyz', index=':')
    assert np.allclose([frame.cell[:2] for frame in frames], atoms.cell[:2])
    assert abs(frames[-1].cell[2, 2] - atoms.cell[2, 2]) > 1e-3
    assert [frame.info['target_temperature_K'] for frame in frames] == [300, 400, 500, 600]


def test_blowup_guard_keeps_partial_trajectory(models, tmp_path):
    """An H-H floor above the actual H-H distances of CaH4 (0.8 A) stops the run at the first check."""
    parameters = {**NVT, 'n_steps': 40, 'min_distance': {'H-H': 0.9}, 'guard_every': 5}
    directory = _prepare(tmp_path / 'floor', models, parameters)
    code, result, stderr = _run_script(directory, _environment(models))  # the exit code of the process
    assert code == md_runner.EXIT_CODES['blowup'] == 2, stderr
    assert 'Traceback' not in stderr
    assert result['status'] == 'blowup' and 'H-H distance' in result['reason'] and 'step 0' in result['reason']
    assert result['blowup_trigger'] == 'distance'  # a shorter time step may cure it (MDBaseWorkChain retries)
    assert (directory / 'last_frame.extxyz').is_file()

    # a time step of 20 fs at 20000 K: atoms collide within a few dumps; what was dumped before is kept
    parameters = {**NVT, 'temperature_K': 20000, 'timestep_fs': 20.0, 'n_steps': 200, 'dump_every': 2}
    directory = _prepare(tmp_path / 'explode', models, parameters)
    code, result = _run(directory, models)
    assert code == 2, result
    assert result['status'] == 'blowup' and result['n_steps_done'] < 200, result
    frames = read(directory / 'trajectory.extxyz', index=':')
    assert len(frames) == result['n_dumps'] >= 1
    assert np.load(directory / 'deviations.npz')['step'].tolist() == [frame.info['step'] for frame in frames]

    # committee criterion: two different models, sigma_F above a tiny 'failed' threshold for 2 dumps
    parameters = {**NVT, 'sigma_f_failed': 1e-6, 'max_consecutive_failed': 2}
    directory = _prepare(tmp_path / 'sigma', models, parameters, members=('a', 'b'))
    code, result = _run(directory, models)
    assert code == 2 and 'sigma_F above' in result['reason'], result
    assert result['blowup_trigger'] == 'committee'  # not retried: the model is untrusted there
    assert result['n_dumps'] == 2 and result['n_steps_done'] == 10


def test_checkpoint_restart_and_sigterm(models, tmp_path):
    parameters = {**NVT, 'n_steps': 20, 'dump_every': 5, 'checkpoint_every': 2}
    directory = _prepare(tmp_path / 'restart', models, parameters)
    code, first = _run(directory, models)
    assert code == 0 and first['n_steps_done'] == 20, first
    state = json.loads((directory / 'checkpoint.json').read_text())
    assert state['step'] == 20 and read(directory / 'checkpoint.extxyz').info['step'] == 20
    # an extra frame after the checkpoint (as left by a run killed between checkpoints) is dropped on restart
    extra = read(directory / 'trajectory.extxyz', index=-1)
    extra.info['step'] = 25
    write(directory / 'trajectory.extxyz', extra, append=True)
    (directory / 'md_input.json').write_text(json.dumps({**json.loads((directory / 'md_input.json').read_text()),
                                                         'n_steps': 40}))  # fmt: skip
    code, second = _run(directory, models)
    assert code == 0, second
    assert second['restarted_from_step'] == 20 and second['n_steps_this_run'] == 20 and second['n_steps_done'] == 40
    steps = [frame.info['step'] for frame in read(directory / 'trajectory.extxyz', index=':')]
    assert steps == list(range(0, 45, 5))
    assert np.load(directory / 'deviations.npz')['step'].tolist() == steps

    # SIGTERM (SLURM at walltime): checkpoint + status 'interrupted', exit code 3; a rerun finishes the job
    parameters = {**NVT, 'ensemble': 'npt', 'pressure_GPa': 40.0, 'n_steps': 100000, 'dump_every': 20,
                  'checkpoint_every': 1000}  # fmt: skip
    directory = _prepare(tmp_path / 'sigterm', models, parameters)
    process = subprocess.Popen(
        [sys.executable, '-m', RUNNER_MODULE],
        cwd=directory,
        env=_environment(models),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (directory / 'trajectory.extxyz').is_file():
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == md_runner.EXIT_CODES['interrupted'] == 3, stderr
    result = json.loads((directory / 'result.json').read_text())
    assert result['status'] == 'interrupted' and 'SIGTERM' in result['reason']
    step = json.loads((directory / 'checkpoint.json').read_text())['step']
    assert step == result['n_steps_done'] > 0
    assert read(directory / 'checkpoint.extxyz').has('momenta')
    assert result['integrator'] == 'IsotropicMTKNPT'
    # continue to the next dump after the interruption
    target = (step // 20 + 1) * 20
    (directory / 'md_input.json').write_text(json.dumps({**json.loads((directory / 'md_input.json').read_text()),
                                                         'n_steps': target}))  # fmt: skip
    code, finished = _run(directory, models)
    assert code == 0 and finished['restarted_from_step'] == step and finished['n_steps_done'] == target, finished
    # the Nose-Hoover chains and the barostat momentum continue where they were
    assert {'dynamics._p_eps', '_thermostat._p_eta', '_barostat._p_xi'} <= set(finished['restored_integrator_state'])
    steps = [frame.info['step'] for frame in read(directory / 'trajectory.extxyz', index=':')]
    assert steps == list(range(0, target + 1, 20))


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'ensemble': 'nve'}, "ensemble: unknown ensemble 'nve'"),
        ({'timestep_fs': 0}, 'timestep_fs: must be positive'),
        ({'timestep_fs': -1.0}, 'timestep_fs: must be positive'),
        ({'n_steps': 2.5}, 'n_steps: expected an integer'),
        ({'models': [{'file': 'missing.nequip.zip', 'sha256': '0' * 64}]}, 'models[0].file: no such file'),
        ({'models': [{'file': 'model_0.nequip.zip', 'sha256': '0' * 64}]}, 'models[0].sha256: model_0.nequip.zip'),
        ({'ensemble': 'npt'}, 'pressure_GPa: required'),
        ({'barostat': 'semi'}, "barostat: unknown barostat 'semi'"),
        ({'temperature': 300}, "unknown parameter(s) ['temperature']"),
        ({'compile_model': 'yes'}, "compile_model: expected true or false, got 'yes'"),
        ({'min_distance': {'H-He': 1.0}}, "min_distance: unknown pair 'H-He'"),
        ({'structure': 'absent.extxyz'}, "structure: no such file 'absent.extxyz'"),
    ],
)
def test_bad_input_is_reported(tmp_path, capsys, change, message):
    """Validation comes before any model is loaded: result.json status 'error' with the reason, exit code 1."""
    directory = tmp_path / 'bad'
    directory.mkdir()
    (directory / 'model_0.nequip.zip').write_bytes(b'not a model')
    write(directory / 'initial.extxyz', _structure())
    models = [{'file': 'model_0.nequip.zip', 'sha256': file_sha256(directory / 'model_0.nequip.zip')}]
    (directory / 'md_input.json').write_text(json.dumps({**NVT, 'models': models, **change}))
    assert md_runner.main(directory) == md_runner.EXIT_CODES['error'] == 1
    stderr = capsys.readouterr().err
    assert 'Traceback' not in stderr and message in stderr
    outcome = json.loads((directory / 'result.json').read_text())
    assert outcome['status'] == 'error' and message in outcome['reason']
    if change == {'timestep_fs': 0}:  # the same through the script: the process exits with 1
        env = {**os.environ, 'PYTHONPATH': str(REPOSITORY), 'AIIDA_POLYHYDRIDE_CACHE': str(tmp_path / 'cache')}
        code, outcome, stderr = _run_script(directory, env, timeout=120)
        assert code == 1 and 'Traceback' not in stderr and message in outcome['reason']


def test_unusable_package_is_reported(tmp_path, capsys):
    """A package with the right sha256 that is no model: the compile error is reported, not raised."""
    directory = tmp_path / 'junk'
    directory.mkdir()
    (directory / 'model_0.nequip.zip').write_bytes(b'not a model')
    write(directory / 'initial.extxyz', _structure())
    models = [{'file': 'model_0.nequip.zip', 'sha256': file_sha256(directory / 'model_0.nequip.zip')}]
    (directory / 'md_input.json').write_text(json.dumps({**NVT, 'models': models}))
    os.environ['AIIDA_POLYHYDRIDE_CACHE'] = str(tmp_path / 'cache')
    try:
        assert md_runner.main(directory) == 1
    finally:
        os.environ.pop('AIIDA_POLYHYDRIDE_CACHE')
    outcome = json.loads((directory / 'result.json').read_text())
    assert outcome['status'] == 'error' and 'nequip-compile failed' in outcome['reason']


def test_missing_input_file(tmp_path):
    with pytest.raises(md_runner.InputError, match=r'no md_input\.json or md_input\.yaml'):
        md_runner.load_parameters(tmp_path)
    (tmp_path / 'md_input.yaml').write_text('ensemble: nvt\n')
    with pytest.raises(md_runner.InputError, match=r"missing required parameter\(s\) \['temperature_K'"):
        md_runner.validate_parameters(md_runner.load_parameters(tmp_path), tmp_path)


def test_temperature_ramp_and_guard_units():
    parameters = {'temperature_K': [1000.0, 2000.0], 'n_steps': 100}
    assert [md_runner.target_temperature(step, parameters) for step in (0, 50, 100)] == [1000, 1500, 2000]
    atoms = _structure(stdev=0.0)
    assert md_runner.guard_distances(atoms, {'H-H': 0.35, 'M-H': 0.8, 'M-M': 1.5}) is None
    assert 'H-H distance 0.800' in md_runner.guard_distances(atoms, {'H-H': 0.85, 'M-H': 0.8, 'M-M': 1.5})
