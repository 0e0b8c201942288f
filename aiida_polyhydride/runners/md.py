"""Compute-node runner of MDCalculation: ASE MD driven by committee member 0, committee deviations at dumps.

Runs in the calculation's working directory as ``python -m aiida_polyhydride.runners.md`` with the environment's
Python and no aiida import. Reads ``md_input.json`` (or ``md_input.yaml``), the structure
(``initial.extxyz``) and the ``.nequip.zip`` packages it names; compiles them (cached by sha256, see
:mod:`.compiled_models`); propagates with member 0 and evaluates every member on each dumped frame.

Writes ``trajectory.extxyz`` (one frame per dump, appended), ``deviations.npz`` (per-dump arrays), ``checkpoint.extxyz``
+ ``checkpoint.json`` (every ``checkpoint_every`` dumps, at the end and on SIGTERM) and ``result.json``. A rerun in a
folder holding a checkpoint continues from its step: later trajectory frames are dropped first, so no step appears
twice. The format is described in docs/how-to/md-runner.md.

Exit codes: 0 ok, 1 error (bad input, missing/corrupt package, compile failure), 2 blow-up (partial trajectory kept),
3 interrupted by a signal (checkpoint written), 4 walltime (``max_walltime_s``; checkpoint written).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ..analysis.committee import energy_deviation, force_deviation, stress_deviation
from .compiled_models import CompilationError, compiled_model, file_sha256

__all__ = (
    'EXIT_CODES',
    'FILES',
    'InputError',
    'build_dynamics',
    'committee_frame',
    'guard_distances',
    'keep_freed_memory',
    'load_parameters',
    'main',
    'run',
    'set_target_temperature',
    'target_temperature',
    'validate_parameters',
)

EXIT_CODES = {'ok': 0, 'error': 1, 'blowup': 2, 'interrupted': 3, 'walltime': 4}
FILES = {
    'input_json': 'md_input.json',
    'input_yaml': 'md_input.yaml',
    'structure': 'initial.extxyz',
    'trajectory': 'trajectory.extxyz',
    'deviations': 'deviations.npz',
    'checkpoint': 'checkpoint.extxyz',
    'checkpoint_state': 'checkpoint.json',
    'last_frame': 'last_frame.extxyz',
    'result': 'result.json',
}
ENSEMBLES = ('nvt', 'npt')
THERMOSTATS = ('langevin', 'nose_hoover_chain')  # NVT only; NPT uses the MTK Nose-Hoover chains
BAROSTATS = ('isotropic', 'anisotropic', 'normal')
DEFAULTS = {
    'ensemble': 'nvt',
    'thermostat': 'langevin',
    'barostat': 'isotropic',
    'normal_axis': 2,
    'temperature_K': None,  # required: a number or [T_start, T_end] (linear ramp over n_steps)
    'pressure_GPa': None,  # required for npt
    'timestep_fs': None,  # required
    'n_steps': None,  # required
    'dump_every': 10,
    'checkpoint_every': 10,  # in dumps
    'seed': 0,
    'friction_per_fs': 0.01,  # Langevin
    'tdamp_fs': None,  # Nose-Hoover chain thermostat time scale: default 100 time steps
    'pdamp_fs': None,  # MTK barostat time scale: default 1000 time steps
    'models': None,  # required: [{'file': ..., 'sha256': ...}, ...]; member 0 drives the MD
    'structure': FILES['structure'],
    'device': 'cpu',
    'compile_model': True,  # False: the packaged models run eagerly (no ~30 s nequip-compile per new model)
    'num_threads': None,
    'min_distance': {'H-H': 0.35, 'M-H': 0.8, 'M-M': 1.5},  # Angstrom; M = any species but H
    'guard_every': 1,  # distance check every k steps (and at every dump)
    'sigma_f_failed': None,  # eV/A; None: no committee-based stop
    'max_consecutive_failed': 5,
    'max_walltime_s': None,
}
REQUIRED = ('temperature_K', 'timestep_fs', 'n_steps', 'models')


class InputError(ValueError):
    """md_input names something unusable; the message names the key."""


class Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Ends the MD loop with a status other than 'ok'."""

    def __init__(self, status: str, reason: str, trigger: str | None = None):
        super().__init__(reason)
        self.status, self.reason, self.trigger = status, reason, trigger


# --- input ---------------------------------------------------------------------------------------------------------


def load_parameters(workdir: str | Path = '.') -> dict:
    """The raw parameters from ``md_input.json`` (preferred) or ``md_input.yaml`` in ``workdir``."""
    workdir = Path(workdir)
    if (workdir / FILES['input_json']).is_file():
        try:
            return json.loads((workdir / FILES['input_json']).read_text())
        except json.JSONDecodeError as exception:
            raise InputError(f'{FILES["input_json"]}: not valid JSON ({exception})') from None
    if (workdir / FILES['input_yaml']).is_file():
        import yaml

        try:
            return yaml.safe_load((workdir / FILES['input_yaml']).read_text())
        except yaml.YAMLError as exception:
            raise InputError(f'{FILES["input_yaml"]}: not valid YAML ({exception})') from None
    raise InputError(f'no {FILES["input_json"]} or {FILES["input_yaml"]} in {workdir.resolve()}')


def _number(parameters, key, positive=True, integer=False, allow_zero=False):
    value = parameters[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f'{key}: expected a finite number, got {value!r}')
    if integer and int(value) != value:
        raise InputError(f'{key}: expected an integer, got {value!r}')
    if positive and not (value > 0 or (allow_zero and value == 0)):
        raise InputError(f'{key}: must be {"non-negative" if allow_zero else "positive"}, got {value!r}')
    return int(value) if integer else float(value)


def validate_parameters(raw: dict, workdir: str | Path = '.', check_files: bool = True) -> dict:
    """``raw`` completed with the defaults and checked; raises :class:`InputError` naming the offending key.

    With ``check_files`` (on the compute node) the structure and every model package must exist in ``workdir`` and
    match their sha256 (before anything is compiled); without, only the values are checked (before submission).
    """
    workdir = Path(workdir)
    if not isinstance(raw, dict):
        raise InputError(f'md_input: expected a mapping of parameters, got {type(raw).__name__}')
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise InputError(f'unknown parameter(s) {unknown}; known: {sorted(DEFAULTS)}')
    parameters = {**DEFAULTS, **raw}
    parameters['min_distance'] = {**DEFAULTS['min_distance'], **(raw.get('min_distance') or {})}
    missing = [key for key in REQUIRED if parameters[key] is None]
    if missing:
        raise InputError(f'missing required parameter(s) {missing}')

    for key, choices in (('ensemble', ENSEMBLES), ('thermostat', THERMOSTATS), ('barostat', BAROSTATS)):
        if parameters[key] not in choices:
            raise InputError(f'{key}: unknown {key} {parameters[key]!r}; choose one of {list(choices)}')
    parameters['timestep_fs'] = _number(parameters, 'timestep_fs')
    parameters['n_steps'] = _number(parameters, 'n_steps', integer=True, allow_zero=True)
    for key in ('dump_every', 'checkpoint_every', 'guard_every', 'max_consecutive_failed'):
        parameters[key] = _number(parameters, key, integer=True)
    parameters['seed'] = _number(parameters, 'seed', integer=True, allow_zero=True)
    for key in ('friction_per_fs', 'tdamp_fs', 'pdamp_fs', 'sigma_f_failed', 'max_walltime_s', 'num_threads'):
        if parameters[key] is not None:
            parameters[key] = _number(parameters, key, integer=key == 'num_threads')
    parameters['tdamp_fs'] = parameters['tdamp_fs'] or 100 * parameters['timestep_fs']
    parameters['pdamp_fs'] = parameters['pdamp_fs'] or 1000 * parameters['timestep_fs']
    if not isinstance(parameters['compile_model'], bool):
        raise InputError(f'compile_model: expected true or false, got {parameters["compile_model"]!r}')
    if parameters['normal_axis'] not in (0, 1, 2):
        raise InputError(f'normal_axis: expected 0, 1 or 2 (the cell vector along the slab normal), got '
                         f'{parameters["normal_axis"]!r}')  # fmt: skip

    temperature = parameters['temperature_K']
    temperatures = list(temperature) if isinstance(temperature, (list, tuple)) else [temperature, temperature]
    if len(temperatures) != 2:
        raise InputError(f'temperature_K: expected a number or [T_start, T_end], got {temperature!r}')
    parameters['temperature_K'] = [
        _number({'temperature_K': value}, 'temperature_K', allow_zero=True) for value in temperatures
    ]
    if parameters['ensemble'] == 'npt':
        if parameters['pressure_GPa'] is None:
            raise InputError('pressure_GPa: required for ensemble npt')
        parameters['pressure_GPa'] = _number(parameters, 'pressure_GPa', positive=False)
        if min(parameters['temperature_K']) <= 0:
            raise InputError('temperature_K: must be positive for the npt (Nose-Hoover chain) integrators')
    for pair, floor in parameters['min_distance'].items():
        if pair not in DEFAULTS['min_distance']:
            raise InputError(f'min_distance: unknown pair {pair!r}; known: {list(DEFAULTS["min_distance"])}')
        _number({f'min_distance.{pair}': floor}, f'min_distance.{pair}', allow_zero=True)

    if not check_files:
        return parameters
    structure = workdir / parameters['structure']
    if not structure.is_file():
        raise InputError(f'structure: no such file {parameters["structure"]!r} in the working directory')
    models = parameters['models']
    if not isinstance(models, list) or not models:
        raise InputError('models: expected a non-empty list of {"file": ..., "sha256": ...}')
    for index, model in enumerate(models):
        if not isinstance(model, dict) or set(model) != {'file', 'sha256'}:
            raise InputError(f'models[{index}]: expected {{"file": ..., "sha256": ...}}, got {model!r}')
        path = workdir / model['file']
        if not path.is_file():
            raise InputError(f'models[{index}].file: no such file {model["file"]!r} in the working directory')
        if file_sha256(path) != model['sha256']:
            raise InputError(f'models[{index}].sha256: {model["file"]} does not match its recorded sha256 '
                             f'{model["sha256"]} (corrupt or wrong file)')  # fmt: skip
    return parameters


# --- dynamics ------------------------------------------------------------------------------------------------------


def target_temperature(step: int, parameters: dict) -> float:
    """Linear ramp from T_start (step 0) to T_end (step n_steps)."""
    start, end = parameters['temperature_K']
    return start + (end - start) * min(step / max(parameters['n_steps'], 1), 1.0)


def build_dynamics(atoms, parameters: dict, temperature: float, rng: np.random.Generator):
    """The ASE integrator for ``parameters`` (ensemble, thermostat, barostat) on ``atoms`` (calculator attached).

    - nvt + langevin: :class:`ase.md.langevin.Langevin` (no centre-of-mass fixing: it is deprecated in ASE 3.29);
    - nvt + nose_hoover_chain: :class:`ase.md.nose_hoover_chain.NoseHooverChainNVT`;
    - npt + isotropic: :class:`~ase.md.nose_hoover_chain.IsotropicMTKNPT` (cell shape kept, volume fluctuates);
    - npt + anisotropic: :class:`~ase.md.nose_hoover_chain.MTKNPT` (all 9 cell degrees of freedom);
    - npt + normal: :class:`~ase.md.nose_hoover_chain.MaskedMTKNPT` with only cell vector ``normal_axis`` free, so
      the lateral cell of a slab stays fixed and only the pressure along the normal is controlled.
    """
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT, MaskedMTKNPT, NoseHooverChainNVT

    timestep = parameters['timestep_fs'] * units.fs
    tdamp = parameters['tdamp_fs'] * units.fs
    if parameters['ensemble'] == 'nvt':
        if parameters['thermostat'] == 'langevin':
            friction = parameters['friction_per_fs'] / units.fs
            return Langevin(atoms, timestep, temperature_K=temperature, friction=friction, fixcm=False, rng=rng)
        return NoseHooverChainNVT(atoms, timestep, temperature_K=temperature, tdamp=tdamp)
    common = {
        'timestep': timestep,
        'temperature_K': temperature,
        'pressure_au': parameters['pressure_GPa'] * units.GPa,
        'tdamp': tdamp,
        'pdamp': parameters['pdamp_fs'] * units.fs,
    }
    if parameters['barostat'] == 'isotropic':
        return IsotropicMTKNPT(atoms, **common)
    if parameters['barostat'] == 'anisotropic':
        return MTKNPT(atoms, **common)
    # a numpy mask, not the documented tuple: ASE 3.29 updates the cell momenta with `p_c[mask] += ...`, and a tuple of
    # booleans there is a (no-op) multidimensional index, so with a tuple the cell never moves
    mask = np.array([axis == parameters['normal_axis'] for axis in range(3)])
    return MaskedMTKNPT(atoms, mask=mask, **common)


def set_target_temperature(dynamics, temperature: float) -> None:
    """Change the thermostat target of a running integrator (for temperature ramps).

    ASE's Nose-Hoover chain integrators have no public setter: their kT attributes are set directly (the chain masses
    keep the values of the starting temperature, which only changes the coupling time slightly).
    """
    from ase import units

    if hasattr(dynamics, 'set_temperature'):  # Langevin
        dynamics.set_temperature(temperature_K=temperature)
        return
    kT = units.kB * temperature  # noqa: N806
    for owner in (dynamics, getattr(dynamics, '_thermostat', None), getattr(dynamics, '_barostat', None)):
        if owner is not None and hasattr(owner, '_kT'):
            owner._kT = kT
    if hasattr(dynamics, '_temperature_K'):
        dynamics._temperature_K = temperature


# integrator variables beyond positions, momenta and cell, saved in checkpoint.json so a restart continues the chains
_STATE = {
    'dynamics': ('_p_eps', '_p_g', '_p_c'),
    '_thermostat': ('_eta', '_p_eta'),
    '_barostat': ('_xi', '_p_xi'),
}


def integrator_state(dynamics) -> dict:
    state = {}
    for owner_name, names in _STATE.items():
        owner = dynamics if owner_name == 'dynamics' else getattr(dynamics, owner_name, None)
        for name in names:
            # MaskedMTKNPT derives _p_g from _p_c: save only what can be set
            if owner is None or name not in vars(owner):
                continue
            state[f'{owner_name}.{name}'] = np.asarray(getattr(owner, name)).tolist()
    return state


def restore_integrator_state(dynamics, state: dict) -> list[str]:
    """Set the saved variables on a freshly built integrator; returns the names restored."""
    restored = []
    for key, value in state.items():
        owner_name, name = key.split('.')
        owner = dynamics if owner_name == 'dynamics' else getattr(dynamics, owner_name, None)
        if owner is not None and name in vars(owner):
            current = getattr(owner, name)
            setattr(owner, name, float(value) if np.ndim(current) == 0 else np.asarray(value, dtype=float))
            restored.append(key)
    return restored


# --- guards and committee --------------------------------------------------------------------------------------------


def guard_distances(atoms, floors: dict, neighbours: tuple | None = None) -> str | None:
    """A message when two atoms are closer than the floor of their pair class (H-H, M-H, M-M), else None.

    ``neighbours``: pairs ``(first, second, distances)`` of ``atoms`` holding every pair closer than the largest floor
    (the model's neighbour list of the frame, see :meth:`SharedModelInput.neighbours`); without it they are searched.
    """
    cutoff = max(floors.values())
    if cutoff <= 0 or len(atoms) < 2:
        return None
    if neighbours is None:
        from ase.neighborlist import neighbor_list

        first, second, distances = neighbor_list('ijd', atoms, cutoff)
    else:
        first, second, distances = neighbours
    if len(first) == 0:
        return None
    is_h = atoms.numbers == 1
    n_h = is_h[first].astype(int) + is_h[second]
    classes = np.array(['M-M', 'M-H', 'H-H'])[n_h]
    for pair, floor in floors.items():
        close = (classes == pair) & (distances < floor)
        if close.any():
            k = np.flatnonzero(close)[np.argmin(distances[close])]
            atom, other = sorted((int(first[k]), int(second[k])))  # the list holds each pair both ways round
            return f'{pair} distance {distances[k]:.3f} A below the floor {floor} A (atoms {atom} and {other})'
    return None


def _pressure_gpa(atoms) -> float:
    from ase import units

    stress = atoms.get_stress(voigt=False, include_ideal_gas=True)
    return float(-np.trace(stress) / 3 / units.GPa)


def committee_frame(atoms, members) -> dict:
    """Energies, forces, stresses of every member on ``atoms`` (member 0: ``atoms.calc``) and the deviations."""
    energies, forces, stresses = [atoms.get_potential_energy()], [atoms.get_forces()], [atoms.get_stress()]
    for calculator in members[1:]:
        copy = atoms.copy()
        copy.calc = calculator
        energies.append(copy.get_potential_energy())
        forces.append(copy.get_forces())
        stresses.append(copy.get_stress())
    result = {'energies': np.array(energies, dtype=float)}
    if len(members) < 2:
        return {**result, 'sigma_f': math.nan, 'sigma_e': math.nan, 'sigma_v': math.nan}
    return {
        **result,
        'sigma_f': force_deviation(forces),
        'sigma_e': energy_deviation(energies, len(atoms)),
        'sigma_v': stress_deviation(stresses),
    }


# --- files -----------------------------------------------------------------------------------------------------------

_RECORD_KEYS = (
    'step', 'time_fs', 'temperature_K', 'target_temperature_K', 'pressure_GPa', 'volume', 'energy',
    'sigma_f', 'sigma_e', 'sigma_v',
)  # fmt: skip


def _write_json(path: Path, content: dict) -> None:
    temporary = path.with_suffix(path.suffix + '.tmp')
    temporary.write_text(json.dumps(content, indent=2) + '\n')
    os.replace(temporary, path)


def _write_deviations(path: Path, records: list[dict], n_models: int) -> None:
    arrays = {key: np.array([record[key] for record in records], dtype=float) for key in _RECORD_KEYS}
    arrays['step'] = arrays['step'].astype(int)
    energies = [record['energies'] for record in records]
    arrays['model_energies'] = np.array(energies, dtype=float).reshape(len(records), n_models)
    temporary = path.with_name(path.name + '.tmp.npz')
    np.savez(temporary, **arrays)
    os.replace(temporary, path)


def _records_from_trajectory(path: Path, up_to_step: int) -> list[dict]:
    """The dump records of frames with step <= up_to_step; the file is rewritten without the later frames."""
    from ase.io import read, write

    if not path.is_file() or path.stat().st_size == 0:
        return []
    frames = [frame for frame in read(path, index=':') if frame.info['step'] <= up_to_step]
    temporary = path.with_name(path.name + '.tmp')
    write(temporary, frames, format='extxyz')
    os.replace(temporary, path)
    records = []
    for frame in frames:
        record = {key: frame.info[key] for key in _RECORD_KEYS if key != 'energy'}
        record['energy'] = frame.get_potential_energy()
        record['energies'] = np.atleast_1d(np.asarray(frame.info['model_energies'], dtype=float))
        records.append(record)
    return records


def _write_checkpoint(workdir: Path, atoms, step: int, dynamics, extra: dict) -> None:
    from ase.io import write

    snapshot = atoms.copy()  # positions, momenta, cell, numbers; no calculator results
    snapshot.info = {'step': step}
    temporary = workdir / (FILES['checkpoint'] + '.tmp')
    write(temporary, snapshot, format='extxyz')
    os.replace(temporary, workdir / FILES['checkpoint'])
    state = {'step': step, 'integrator': type(dynamics).__name__, 'state': integrator_state(dynamics), **extra}
    _write_json(workdir / FILES['checkpoint_state'], state)


def _read_checkpoint(workdir: Path):
    from ase.io import read

    path, state_path = workdir / FILES['checkpoint'], workdir / FILES['checkpoint_state']
    if not path.is_file():
        return None, None
    atoms = read(path, format='extxyz')
    state = json.loads(state_path.read_text()) if state_path.is_file() else {'step': atoms.info['step'], 'state': {}}
    if state['step'] != atoms.info['step']:
        raise InputError(f'{FILES["checkpoint"]} (step {atoms.info["step"]}) and {FILES["checkpoint_state"]} '
                         f'(step {state["step"]}) disagree: remove both to start from the structure')  # fmt: skip
    if not atoms.has('momenta'):
        raise InputError(f'{FILES["checkpoint"]}: no momenta, cannot continue from it')
    return atoms, state


# --- driver ----------------------------------------------------------------------------------------------------------


class _Signals:
    """Records SIGTERM/SIGINT/SIGUSR1 (SLURM's walltime warning) so the loop can checkpoint and stop cleanly."""

    NUMBERS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self):
        self.received = None
        self._previous = {}

    def install(self):
        for number in self.NUMBERS:
            self._previous[number] = signal.signal(number, self._handler)

    def restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handler(self, number, frame):
        self.received = signal.Signals(number).name


class SharedModelInput:
    """The model input of the last frame (species mapping and neighbour list, device copy), built by the first
    member that evaluates the frame and reused by the other members with the same transforms (same r_max, type
    mapping, neighbour-list backend): at a dump the committee's members reuse what the driving member built for the
    step. The neighbour list is ~8% of a 'cpu'-preset evaluation on one CPU thread (100-1500 atoms), now paid once
    per frame instead of once per member; the distance guard reads its short pairs from it too (:meth:`neighbours`)
    instead of searching the frame again (~10% of an MD step at 1500 atoms)."""

    def __init__(self):
        self._key, self._frame, self._data, self._cutoff = None, None, None, 0.0
        self.n_built = 0  # inputs built: frames seen, not members evaluated

    @staticmethod
    def _frame_key(atoms) -> tuple:
        return atoms.numbers.tobytes(), atoms.positions.tobytes(), atoms.cell.array.tobytes(), atoms.pbc.tobytes()

    def get(self, transforms_key: tuple, device, atoms, build, cutoff: float = 0.0):
        """The model input of ``atoms``, built with ``build`` unless it was for this frame; ``cutoff``: the
        smallest pair cutoff of the neighbour list ``build`` makes."""
        key, frame = (transforms_key, str(device)), self._frame_key(atoms)
        if (key, frame) != (self._key, self._frame):
            self._key, self._frame, self._data = None, None, build(atoms)  # no stale key if the build fails
            self._key, self._frame, self._cutoff, self.n_built = key, frame, cutoff, self.n_built + 1
        return dict(self._data)  # a shallow copy: a model that adds keys to its input leaves the shared one as built

    def neighbours(self, atoms, cutoff: float) -> tuple | None:
        """``(first, second, distances)`` of the pairs of ``atoms`` closer than ``cutoff``, from the model input
        when it was built for this very frame with a neighbour list reaching at least ``cutoff``; else None."""
        if self._frame != self._frame_key(atoms) or self._cutoff < cutoff:
            return None
        first, second = (index.cpu().numpy() for index in self._data['edge_index'])
        shifts = self._data['edge_cell_shift'].cpu().numpy()
        vectors = atoms.positions[second] - atoms.positions[first] + shifts @ atoms.cell.array
        distances = np.linalg.norm(vectors, axis=1)
        close = distances < cutoff
        return first[close], second[close], distances[close]


def _neighbour_cutoff(transforms) -> float:
    """The smallest pair cutoff of the neighbour list the transforms build (0 when they build none)."""
    cutoffs = []
    for transform in transforms:
        if hasattr(transform, 'r_max') and hasattr(transform, 'per_edge_type_cutoff'):
            cutoffs.append(float(transform.r_max))
            per_type = transform.per_edge_type_cutoff or {}
            for value in per_type.values():  # {center: cutoff} or {center: {neighbour: cutoff}}
                cutoffs.extend(float(v) for v in (value.values() if isinstance(value, dict) else [value]))
    return min(cutoffs, default=0.0)


def _transforms_key(transforms) -> tuple:
    """What the model input of a nequip calculator depends on, beyond the atoms: its transforms' settings."""
    fields = ('r_max', 'backend', 'type_names', 'model_type_names', 'per_edge_type_cutoff', 'backend_kwargs')
    key = []
    for transform in transforms:
        settings = tuple((field, repr(getattr(transform, field))) for field in fields if hasattr(transform, field))
        lookup = getattr(transform, 'lookup_table', None)  # the species -> type mapping
        key.append((type(transform).__name__, settings, None if lookup is None else tuple(lookup.tolist())))
    return tuple(key)


def member_calculator(package: Path, sha256: str, parameters: dict, cache: Path, shared_input=None):
    """The ASE calculator of one committee member on ``parameters['device']``: the model compiled with AOTInductor
    (once per content and device, in ``cache``) or, with ``compile_model`` false, the packaged model run eagerly:
    no compile (~30 s per model on a CPU), slower steps; the better choice for short runs of small models.
    Members given the same :class:`SharedModelInput` build the model input of a frame once."""
    from nequip.integrations.ase import NequIPCalculator

    class CommitteeMemberCalculator(NequIPCalculator):
        def atoms_to_data(self, atoms):
            if shared_input is None:
                return super().atoms_to_data(atoms)
            return shared_input.get(transforms_key, self.device, atoms, super().atoms_to_data, cutoff)

    device = parameters['device']
    if parameters['compile_model']:
        path = compiled_model(package, sha256, device=device, cache=cache)
        calculator = CommitteeMemberCalculator.from_compiled_model(
            str(path), device=device, chemical_species_to_atom_type_map=True
        )
    else:  # nequip 0.19's loader of a package without compiling (pinned in constraints.txt)
        calculator = CommitteeMemberCalculator._from_saved_model(
            str(package), device=device, chemical_species_to_atom_type_map=True
        )
    transforms_key, cutoff = _transforms_key(calculator.transforms), _neighbour_cutoff(calculator.transforms)
    return calculator


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of giving it back: by default every tensor above its mmap
    threshold is mapped afresh and unmapped on free, so each model evaluation page-faults its activations in again
    (10x the page faults; 7% of a 'cpu'-preset evaluation at 400 atoms, 13% at 1500, measured here). The process
    keeps up to 1 GiB it no longer uses. False where the C library has no mallopt (not glibc)."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c')).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # <malloc.h>
    settings = ((m_mmap_threshold, 1 << 30), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)


def run(workdir: str | Path = '.', signals: _Signals | None = None) -> dict:
    """Run the MD described by the input files in ``workdir``; returns the result written to result.json."""
    from ase.io import read, write
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    workdir = Path(workdir).resolve()
    started = time.perf_counter()
    signals = signals or _Signals()
    parameters = validate_parameters(load_parameters(workdir), workdir)  # before the slow imports: fast failures
    if parameters['num_threads']:
        import torch

        torch.set_num_threads(parameters['num_threads'])
    keep_freed_memory()

    cache = Path(os.environ.get('AIIDA_POLYHYDRIDE_CACHE') or workdir / 'model_cache')
    shared_input = SharedModelInput()
    members = [member_calculator(workdir / model['file'], model['sha256'], parameters, cache, shared_input)
               for model in parameters['models']]  # fmt: skip
    setup_s = time.perf_counter() - started

    atoms, checkpoint = _read_checkpoint(workdir)
    trajectory, deviations = workdir / FILES['trajectory'], workdir / FILES['deviations']
    if checkpoint is None:
        start_step, consecutive_failed = 0, 0
        atoms = read(workdir / parameters['structure'], format='extxyz')
        atoms.info = {}
        trajectory.unlink(missing_ok=True)
        records = []
        thermalize_momenta(  # Maxwell-Boltzmann
            atoms, temperature_K=parameters['temperature_K'][0], rng=np.random.default_rng(parameters['seed'])
        )
        Stationary(atoms)
    else:
        start_step, consecutive_failed = checkpoint['step'], checkpoint.get('consecutive_failed', 0)
        records = _records_from_trajectory(trajectory, start_step)
    atoms.calc = members[0]
    try:
        atoms.get_potential_energy()
    except Exception as exception:  # unknown species, empty neighbour list ... reported, not a traceback
        raise InputError(f'model 0 cannot evaluate the structure: {type(exception).__name__}: {exception}') from None

    rng = np.random.default_rng([parameters['seed'], start_step])
    dynamics = build_dynamics(atoms, parameters, target_temperature(start_step, parameters), rng)
    restored = restore_integrator_state(dynamics, checkpoint['state']) if checkpoint else []

    n_models, n_atoms = len(members), len(atoms)
    timings = {'setup_s': setup_s, 'md_s': 0.0, 'committee_s': 0.0, 'io_s': 0.0}
    step = start_step
    dumps_since_checkpoint = 0

    def checkpoint_now():
        began = time.perf_counter()
        _write_checkpoint(workdir, atoms, step, dynamics, {'consecutive_failed': consecutive_failed})
        if records:
            _write_deviations(deviations, records, n_models)
        timings['io_s'] += time.perf_counter() - began

    def dump():
        nonlocal consecutive_failed
        began = time.perf_counter()
        committee = committee_frame(atoms, members)
        timings['committee_s'] += time.perf_counter() - began
        began = time.perf_counter()
        record = {
            'step': step,
            'time_fs': step * parameters['timestep_fs'],
            'temperature_K': float(atoms.get_temperature()),
            'target_temperature_K': target_temperature(step, parameters),
            'pressure_GPa': _pressure_gpa(atoms),
            'volume': float(atoms.get_volume()),
            'energy': float(committee['energies'][0]),
            **{key: committee[key] for key in ('sigma_f', 'sigma_e', 'sigma_v', 'energies')},
        }
        records.append(record)
        frame = atoms.copy()
        frame.arrays.pop('momenta', None)
        from ase.calculators.singlepoint import SinglePointCalculator

        frame.calc = SinglePointCalculator(
            frame, energy=record['energy'], forces=atoms.get_forces(), stress=atoms.get_stress()
        )
        # the energy goes in through the calculator (extxyz writes it as the info key 'energy')
        frame.info = {key: record[key] for key in _RECORD_KEYS if key != 'energy'}
        frame.info['model_energies'] = committee['energies']
        write(trajectory, frame, format='extxyz', append=True)
        timings['io_s'] += time.perf_counter() - began
        failed = parameters['sigma_f_failed']
        consecutive_failed = consecutive_failed + 1 if failed is not None and record['sigma_f'] > failed else 0
        if consecutive_failed >= parameters['max_consecutive_failed']:
            raise Stop('blowup', f'sigma_F above {failed} eV/A for {consecutive_failed} consecutive dumps '
                                 f'(last {record["sigma_f"]:.3g} eV/A at step {step})', 'committee')  # fmt: skip

    def guard(check_distances: bool):
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        if not (np.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(atoms.positions))):
            raise Stop('blowup', f'non-finite energy, forces or positions at step {step}', 'nonfinite')
        if check_distances:
            floors = parameters['min_distance']
            message = guard_distances(atoms, floors, shared_input.neighbours(atoms, max(floors.values())))
            if message:
                raise Stop('blowup', f'{message} at step {step}', 'distance')

    status, reason, trigger = 'ok', None, None
    try:
        if start_step == 0:
            guard(True)
            dump()
        while step < parameters['n_steps']:
            if signals.received:
                raise Stop('interrupted', f'{signals.received} received at step {step}')
            if parameters['max_walltime_s'] and time.perf_counter() - started > parameters['max_walltime_s']:
                raise Stop('walltime', f'max_walltime_s {parameters["max_walltime_s"]} s reached at step {step}')
            began = time.perf_counter()
            set_target_temperature(dynamics, target_temperature(step, parameters))
            dynamics.step()
            dynamics.nsteps += 1
            step += 1
            is_dump = step % parameters['dump_every'] == 0
            guard(is_dump or step % parameters['guard_every'] == 0)
            timings['md_s'] += time.perf_counter() - began
            if is_dump:
                dump()
                dumps_since_checkpoint += 1
                if dumps_since_checkpoint >= parameters['checkpoint_every']:
                    checkpoint_now()
                    dumps_since_checkpoint = 0
    except Stop as stop:
        status, reason, trigger = stop.status, stop.reason, stop.trigger
    if status == 'blowup':
        write(workdir / FILES['last_frame'], atoms, format='extxyz')  # the offending configuration, for inspection
        if records:
            _write_deviations(deviations, records, n_models)
    else:  # ok, interrupted, walltime: the folder can be continued from here
        checkpoint_now()

    steps_done = step - start_step
    result = {
        'status': status,
        'reason': reason,
        'blowup_trigger': trigger,  # nonfinite / distance (a shorter time step may cure) or committee (it will not)
        'exit_code': EXIT_CODES[status],
        'n_steps_done': step,
        'n_steps_this_run': steps_done,
        'n_steps_requested': parameters['n_steps'],
        'restarted_from_step': start_step if checkpoint else None,
        'restored_integrator_state': restored,
        'n_dumps': len(records),
        'n_atoms': n_atoms,
        'n_models': n_models,
        'integrator': type(dynamics).__name__,
        'timings': {
            **timings,
            'wall_s': time.perf_counter() - started,
            'steps_per_s': steps_done / timings['md_s'] if timings['md_s'] else None,
            'atom_steps_per_s': steps_done * n_atoms / timings['md_s'] if timings['md_s'] else None,
            'committee_s_per_dump': timings['committee_s'] / len(records) if records else None,
        },
        'versions': {name: version(name) for name in ('ase', 'nequip', 'nequip-allegro', 'torch')},
    }
    _write_json(workdir / FILES['result'], result)
    return result


def _failure(reason: str, signal_name: str | None) -> dict:
    """result.json of a run that raised before or instead of stepping. After a signal it is 'interrupted': a
    scheduler that cancels a job, or ends it at its walltime, signals every process of it, so a model compilation
    dies with the runner, and the folder can simply be run again."""
    if signal_name is not None:
        reason = f'{signal_name} received before the MD started ({reason})'
        return {'status': 'interrupted', 'reason': reason, 'exit_code': EXIT_CODES['interrupted'], 'n_steps_done': 0}
    return {'status': 'error', 'reason': reason, 'exit_code': EXIT_CODES['error']}


def main(workdir: str | Path = '.') -> int:
    """Entry point: runs :func:`run`, turns every failure into result.json status 'error' and exit code 1."""
    workdir = Path(workdir).resolve()
    signals = _Signals()
    signals.install()
    added = []
    for name, folder in (('TMPDIR', 'tmp'), ('TORCHINDUCTOR_CACHE_DIR', 'inductor_cache')):
        if name not in os.environ:  # AOTInductor/torch scratch stays in the job's folder
            (workdir / folder).mkdir(exist_ok=True)
            os.environ[name] = str(workdir / folder)
            added.append(name)
    failed = True
    try:
        result = run(workdir, signals)
        failed = False
    except (InputError, CompilationError) as exception:
        result = _failure(str(exception), signals.received)
    except Exception as exception:  # unexpected: keep the traceback on stderr, the reason in result.json
        traceback.print_exc()
        result = _failure(f'{type(exception).__name__}: {exception}', signals.received)
    finally:  # leave the calling process as it was (main is also called in-process, e.g. by the tests)
        signals.restore()
        for name in added:
            os.environ.pop(name, None)
    if failed:
        _write_json(workdir / FILES['result'], result)
    if result['status'] != 'ok':
        print(f'md runner: {result["status"]}: {result["reason"]}', file=sys.stderr)
    return result['exit_code']


if __name__ == '__main__':
    sys.exit(main())
