"""MD throughput of the ASE runner with an Allegro model on this CPU, its ratio to bare model evaluation, and the
committee overhead (4 members evaluated every 10 steps versus 1 model).

A 'cpu'-preset model is trained for one epoch on synthetic Morse Ca-H frames (the cost of a step depends on the
architecture, not on the weights), packaged and compiled for the CPU once. The 4-member committee is 4 calculators
of that one compiled model: each costs one full evaluation, as distinct members would. Runs go through
``runners.md.main`` (the code an MDCalculation runs) on CaH4 I4/mmm supercells of 100, 400 and 1500 atoms, NVT
Langevin at 300 K, one torch thread; per size the single-model and committee runs go A B B A. ``BENCH_DEVICE=cuda``
runs the same on a GPU (model compiled for cuda) and adds a 10,000-atom cell. Results: benchmarks/results/md.json
(md_cuda.json on a GPU).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
from _machine import machine_description
from _nequip import nequip_environment, timed, train

RESULTS = Path(__file__).parent / 'results' / 'md.json'
PRESET = 'cpu'
# conventional CaH4 cell (10 atoms) repeats for ~100, ~400, ~1500 atoms; steps so each run is 3-30 dumps and
# 30-90k atom-steps (~15-45 s on an idle core); 1500 atoms: 6 dumps, so the overhead is not 3 dumps' noise
SIZES = {(2, 5, 1): 300, (4, 5, 2): 100, (5, 6, 5): 60}
DUMP_EVERY, COMMITTEE_SIZE, TARGET_OVERHEAD = 10, 4, 1.25
DEVICE = os.environ.get('BENCH_DEVICE', 'cpu')
if DEVICE != 'cpu':
    SIZES[(10, 10, 10)] = 20
    RESULTS = RESULTS.with_name(f'md_{DEVICE}.json')


def _protocol_dump_every() -> int:
    """dump_every of the MD protocol's default (production exploration): the interval the overhead is paid at. Read
    from the YAML, not through MDBaseWorkChain.get_protocol_inputs: the GPU machines run this without aiida."""
    import yaml

    from aiida_polyhydride.protocols import protocol_file

    protocol = yaml.safe_load(protocol_file('md').read_text())
    default = protocol['protocols'][protocol['default_protocol']].get('parameters', {})
    return default.get('dump_every', protocol['default_inputs']['parameters']['dump_every'])


PROTOCOL_DUMP_EVERY = _protocol_dump_every()


def _package(root: Path) -> tuple[Path, str]:
    """A one-epoch model of the preset, trained and packaged (.nequip.zip) through the commands
    AllegroTrainCalculation runs."""
    from aiida_polyhydride.analysis.synthetic import synthetic_cah_frames
    from aiida_polyhydride.calculations.allegro_config import OUTPUT_FILES
    from aiida_polyhydride.runners.compiled_models import console_script, file_sha256

    frames = synthetic_cah_frames(n_frames=24, seed=0)
    workdir, environment = root / 'train', nequip_environment(root)
    train(workdir, frames[:20], frames[20:], environment, preset=PRESET, hyperparameters={'max_epochs': 1})
    package = workdir / 'model.nequip.zip'
    timed(
        workdir, environment, console_script('nequip-package'), 'build', OUTPUT_FILES['best_checkpoint'], package.name
    )
    return package, file_sha256(package)


def _structure(repeat):
    from aiida_polyhydride.structures import bulk_phase, rattle

    return rattle(bulk_phase('MH4-I4mmm', 'Ca').repeat(repeat), stdev=0.03, seed=0)


def bare_evaluation_s(compiled: Path, atoms, repeats: int = 5) -> float:
    """Seconds per energy+forces+stress evaluation of the model alone (positions moved each call: no caching)."""
    from nequip.integrations.ase import NequIPCalculator

    atoms = atoms.copy()
    atoms.calc = NequIPCalculator.from_compiled_model(
        str(compiled), device=DEVICE, chemical_species_to_atom_type_map=True
    )
    atoms.get_forces()  # warm-up
    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats):
        atoms.positions += rng.normal(0, 1e-3, atoms.positions.shape)
        start = time.perf_counter()
        atoms.get_forces()
        atoms.get_stress()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def md_run(root: Path, package: Path, sha256: str, atoms, n_steps: int, n_models: int, label: str = '') -> dict:
    """``runners.md.main`` in a fresh directory; returns its result.json."""
    from ase.io import write

    from aiida_polyhydride.runners import md as md_runner

    directory = root / f'md_{len(atoms)}_{n_models}{label}'
    directory.mkdir()
    shutil.copy(package, directory / 'model.nequip.zip')
    write(directory / 'initial.extxyz', atoms)
    parameters = {
        'models': [{'file': 'model.nequip.zip', 'sha256': sha256}] * n_models,
        'ensemble': 'nvt',
        'temperature_K': 300,
        'timestep_fs': 0.5,
        'n_steps': n_steps,
        'dump_every': DUMP_EVERY,
        'checkpoint_every': 1000,
        'num_threads': 1,
        'device': DEVICE,
    }
    (directory / 'md_input.json').write_text(json.dumps(parameters))
    code = md_runner.main(directory)
    result = json.loads((directory / 'result.json').read_text())
    if code != 0:
        raise RuntimeError(f'MD run {directory.name} failed: {result.get("reason")}')
    return result


def measure(root: Path, package: Path, sha256: str, compiled: Path, repeat, n_steps: int) -> dict:
    atoms = _structure(repeat)
    bare_s = bare_evaluation_s(compiled, atoms)
    # single, committee, committee, single: a drift of the machine's speed that is linear in time cancels in the
    # between-run ratio (one pair in one order read 1.28-1.41 where alternating A/B runs agree with the in-run ratio)
    results = {1: [], COMMITTEE_SIZE: []}
    for index, n_models in enumerate((1, COMMITTEE_SIZE, COMMITTEE_SIZE, 1)):
        results[n_models].append(md_run(root, package, sha256, atoms, n_steps, n_models, label=f'_{index}'))

    def total(n_models, key):
        return sum(result['timings'][key] for result in results[n_models])

    n_runs = len(results[1])
    step_s = total(1, 'md_s') / (n_runs * n_steps)
    committee_step_s = total(COMMITTEE_SIZE, 'md_s') / (n_runs * n_steps)
    per_dump_s = total(COMMITTEE_SIZE, 'committee_s') / sum(result['n_dumps'] for result in results[COMMITTEE_SIZE])
    return {
        'n_atoms': len(atoms),
        'n_steps': n_steps,
        'runs_per_model_count': n_runs,
        'md_atom_steps_per_s': round(len(atoms) / step_s, 1),
        'md_step_s': round(step_s, 5),
        'committee_run_md_step_s': round(committee_step_s, 5),
        'bare_evaluation_s': round(bare_s, 5),
        'bare_atom_evaluations_per_s': round(len(atoms) / bare_s, 1),
        'md_step_over_bare_evaluation': round(step_s / bare_s, 3),
        'committee_s_per_dump': round(per_dump_s, 4),
        # the other members' cost per dump interval over the propagation cost of that interval, both measured in the
        # same runs ...
        'committee_overhead': round(1 + per_dump_s / (DUMP_EVERY * committee_step_s), 3),
        # the same with the MD protocol's own dump interval (from these measured times)
        'committee_overhead_at_protocol_dump_every': round(
            1 + per_dump_s / (PROTOCOL_DUMP_EVERY * committee_step_s), 3
        ),
        # ... and the MD loop time of the committee runs over that of the single-model runs
        'committee_overhead_between_runs': round(
            (total(COMMITTEE_SIZE, 'md_s') + total(COMMITTEE_SIZE, 'committee_s'))
            / (total(1, 'md_s') + total(1, 'committee_s')),
            3,
        ),
    }


def _device_name() -> str:
    import torch

    if DEVICE == 'cpu':
        return 'cpu (no GPU measured: see benchmarks/README.md)'
    return f'{DEVICE}: {torch.cuda.get_device_name()}'


def main() -> None:
    from aiida_polyhydride.runners.compiled_models import compiled_model
    from aiida_polyhydride.runners.md import keep_freed_memory

    keep_freed_memory()  # as the runner does: the bare evaluations run with the allocator the MD runs with

    with tempfile.TemporaryDirectory(prefix='bench-md-') as directory:
        root = Path(directory)
        os.environ['AIIDA_POLYHYDRIDE_CACHE'] = str(root / 'cache')
        os.environ.setdefault('TMPDIR', str(root))
        load_before = os.getloadavg()
        started = time.perf_counter()
        package, sha256 = _package(root)
        compile_started = time.perf_counter()
        compiled = compiled_model(package, sha256, device=DEVICE)
        compile_s = time.perf_counter() - compile_started
        runs = [measure(root, package, sha256, compiled, repeat, n_steps) for repeat, n_steps in SIZES.items()]
        load_after = os.getloadavg()
        wall_s = time.perf_counter() - started
    overheads = [run['committee_overhead'] for run in runs]
    result = {
        'benchmark': 'md',
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'machine': f'{machine_description()}, torch {version("torch")}, 1 torch thread',
        'device': _device_name(),
        'load_average_1min_before_after': [round(load_before[0], 2), round(load_after[0], 2)],
        'model': f"'{PRESET}' preset Allegro, 1 epoch on synthetic Ca-H (cost depends on the architecture only)",
        'md': f'ASE runner, NVT Langevin 300 K, 0.5 fs, dump every {DUMP_EVERY} steps, CaH4 I4/mmm supercells',
        'committee': f'{COMMITTEE_SIZE} members evaluated at every dump vs member 0 alone',
        'compile_s': round(compile_s, 1),
        'wall_s': round(wall_s, 1),
        'runs': runs,
        'committee_overhead_target': TARGET_OVERHEAD,
        'committee_overhead_target_met': all(value <= TARGET_OVERHEAD for value in overheads),
        'committee_overhead_expected': round(1 + (COMMITTEE_SIZE - 1) / DUMP_EVERY, 3),
        'protocol_dump_every': PROTOCOL_DUMP_EVERY,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
