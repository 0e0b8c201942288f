"""Learning efficiency: force RMSE on a held-out high-temperature set versus labels, active-learning vs random picks.

One pool of Ca-H frames like those the loop explores (structures/: bulk prototypes, primitive cells, rattled,
strained, off-stoichiometric, liquid-like, dense H2 fluid) is labelled once. All strategies start from the same
random initial set and add labels in rounds of the same size:

(a) active learning, with the selection functions of the loop: a committee of tiny Allegro models is trained on the
    labels so far, sigma_F (analysis/committee.force_deviation) is evaluated on every unlabelled pool frame, frames
    are classified against a trust window (analysis/selection.classify), near duplicates are removed per system
    and farthest-point sampling on the pair-distribution descriptor picks over all candidates, at most
    MAX_PER_SYSTEM per system (analysis/selection.select_candidates);
(a') the same without the per-system cap (an ablation of the cap);
(b) random picks (seeded) of as many frames as (a) took.

The comparison is repeated N_REPEATS times from different initial sets (and random picks); the summary gives the
mean and spread of each budget's score over the repeats and how often each selection beat random picks.

After each round, member 0 (seed 0, trained from scratch, same epochs for all) predicts a held-out set of
liquid-like and strongly rattled cells that no strategy can pick; the force RMSE there is the score.

Labels come from the synthetic species-pair Morse reference (analysis/synthetic.CaHMorseReference), not DFT:
labelling hundreds of frames with pw.x does not fit a benchmark on two cores, and the comparison is about which
frames get labelled, not about the reference. The trust window is placed on each round's sigma_F distribution
(quantiles below), because the loop's absolute window (0.05-0.25 eV/Angstrom, calibrated to a 0.1 eV/Angstrom
target) calls every frame 'failed' for models this small. Results: benchmarks/results/learning_efficiency.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _machine import machine_description
from _nequip import TYPE_NAMES, checkpoint_calculator, nequip_environment, train

RESULTS = Path(__file__).parent / 'results' / 'learning_efficiency.json'
SEED = 0
N_INITIAL, N_PER_ROUND, N_ROUNDS = 8, 12, 2  # budgets 8, 20, 32 labels; 7 trainings per repeat
# repeats differ in the initial set and the random picks (same pool, test set and model seeds): one draw is no
# statistic. ~2.5 min each on two idle cores
N_REPEATS = 4
COMMITTEE_SIZE = 2
HYPERPARAMETERS = {'max_epochs': 25}  # on the 'tiny' preset
N_VALIDATION = 8  # fixed, shared by every model (checkpoint selection and learning-rate schedule), not in the budget
# trust window per round: quantiles of the committee's sigma_F over the unlabelled pool. The least uncertain half is
# 'accurate'; the top 5% is 'failed', skipped as the loop skips frames beyond hi
LO_QUANTILE, HI_QUANTILE = 0.5, 0.95
MAX_PER_SYSTEM = 2  # caps as the loop's select step: per system, and N_PER_ROUND in total
# the loop's selection (farthest-point sampling over all candidates, at most MAX_PER_SYSTEM per system), the same
# without the per-system cap (an ablation of the cap), and random picks of the same budget. Value: the systems the
# selection sees (None: random picks)
STRATEGIES = {'active_learning': 'per_system', 'active_learning_no_system_cap': 'one_system', 'random': None}
DUPLICATE_TOLERANCE = 0.02
DESCRIPTOR_R_MAX = 4.0  # the tiny preset's r_max


def _pool_structures(seed: int) -> list[tuple[str, object]]:
    """(system, unlabelled frame) pairs of the training domain, at a spread of distortions; ~240 frames."""
    from aiida_polyhydride.structures import (
        PROTOTYPES,
        bulk_phase,
        dense_h2_fluid,
        liquid_like,
        off_stoichiometric,
        primitive_cell,
        rattle,
        strain,
    )

    rng = np.random.default_rng(seed)

    def next_seed() -> int:
        return int(rng.integers(2**31))

    frames = []
    for name in PROTOTYPES:
        for volume_scale in (0.9, 1.0, 1.1):
            reference = bulk_phase(name)
            bulk = bulk_phase(name, volume_per_atom=volume_scale * reference.get_volume() / len(reference))
            cell = primitive_cell(bulk)
            for stdev in (0.02, 0.05, 0.1):
                frames.append((name, rattle(cell, stdev, seed=next_seed())))
            for max_strain in (0.03, 0.06):
                frames.append((name, rattle(strain(cell, max_strain, seed=next_seed()), 0.04, seed=next_seed())))
            for stdev in (0.05, 0.12):
                frames.append((f'{name}-conventional', rattle(bulk, stdev, seed=next_seed())))
    mh4 = bulk_phase('MH4-I4mmm')
    for x in (3.0, 5.0, 6.0):
        for stdev in (0.0, 0.05, 0.1):
            for _ in range(4):
                frame = off_stoichiometric(mh4, x, seed=next_seed(), min_distance=1.3)
                frames.append(('off_stoichiometric', rattle(frame, stdev, seed=next_seed())))
    for x in (2.0, 3.0, 4.0, 5.0, 6.0):
        for _ in range(6):
            frames.append(('liquid_like', liquid_like(x=x, n_metal=2, seed=next_seed())))
    for density in (0.25, 0.35, 0.45):
        for _ in range(5):
            frames.append(('dense_h2_fluid', dense_h2_fluid(5, density, seed=next_seed())))
    return frames


def _test_structures(seed: int) -> list[tuple[str, object]]:
    """Held-out 'high-temperature' frames: liquid-like cells and strongly rattled prototypes (never in the pool)."""
    from aiida_polyhydride.structures import PROTOTYPES, bulk_phase, liquid_like, primitive_cell, rattle

    rng = np.random.default_rng(seed)
    frames = []
    for x in (2.0, 3.0, 4.0, 5.0, 6.0):
        for _ in range(4):
            frames.append(('liquid_like', liquid_like(x=x, n_metal=2, seed=int(rng.integers(2**31)))))
    for name in PROTOTYPES:
        for _ in range(5):
            frames.append(('rattled_0.2', rattle(primitive_cell(bulk_phase(name)), 0.2, seed=int(rng.integers(2**31)))))
    return frames


def _label(structures):
    from aiida_polyhydride.analysis.synthetic import CaHMorseReference, label_with

    systems = [system for system, _ in structures]
    return systems, label_with(CaHMorseReference(), [frame for _, frame in structures])


def _predicted_forces(calculator, frames) -> list[np.ndarray]:
    predictions = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        predictions.append(atoms.get_forces())
    return predictions


def _force_rmse_mev(predicted, frames, systems) -> dict:
    """Force RMSE (meV/Angstrom) over all components of the frames, overall and per system."""
    errors = [p - frame.get_forces() for p, frame in zip(predicted, frames, strict=True)]
    result = {'all': float(np.sqrt(np.mean(np.concatenate(errors) ** 2)) * 1000)}
    for system in dict.fromkeys(systems):
        mine = np.concatenate([error for error, owner in zip(errors, systems, strict=True) if owner == system])
        result[system] = float(np.sqrt(np.mean(mine**2)) * 1000)
    return {key: round(value, 1) for key, value in result.items()}


class Trainer:
    """Trains member ``seed`` on a list of pool indices (cached: a model per (indices, seed) is trained once)."""

    def __init__(self, root: Path, pool, validation):
        self.root, self.pool, self.validation = root, pool, validation
        self.environment = nequip_environment(root)
        self.cache: dict[tuple, object] = {}
        self.train_seconds = 0.0
        self.n_trainings = 0

    def calculator(self, indices, seed: int):
        key = (tuple(sorted(indices)), seed)
        if key not in self.cache:
            workdir = self.root / f'model-{len(self.cache)}'
            frames = [self.pool[index] for index in key[0]]
            self.train_seconds += train(
                workdir, frames, self.validation, self.environment, 'tiny', HYPERPARAMETERS, seed
            )
            self.n_trainings += 1
            self.cache[key] = checkpoint_calculator(workdir / 'checkpoints' / 'best.ckpt')
        return self.cache[key]


def _active_learning_round(
    trainer: Trainer, labelled, pool, systems, descriptors, capped: bool
) -> tuple[list[int], dict]:
    from aiida_polyhydride.analysis.committee import force_deviation
    from aiida_polyhydride.analysis.selection import class_ratios, classify, select_candidates

    unlabelled = np.array([index for index in range(len(pool)) if index not in set(labelled)])
    start = time.perf_counter()
    forces = [
        _predicted_forces(trainer.calculator(labelled, seed), [pool[i] for i in unlabelled])
        for seed in range(COMMITTEE_SIZE)
    ]
    sigma = np.array([force_deviation([member[n] for member in forces]) for n in range(len(unlabelled))])
    lo, hi = (float(value) for value in np.quantile(sigma, [LO_QUANTILE, HI_QUANTILE]))
    classes = classify(sigma, lo, hi)
    picked = select_candidates(
        descriptors[unlabelled],
        classes,
        [systems[index] if capped else 'pool' for index in unlabelled],
        MAX_PER_SYSTEM if capped else N_PER_ROUND,
        N_PER_ROUND,
        DUPLICATE_TOLERANCE,
    )
    chosen = unlabelled[picked].tolist()
    record = {
        'lo_eV_A': round(lo, 3),
        'hi_eV_A': round(hi, 3),
        'sigma_f_median_eV_A': round(float(np.median(sigma)), 3),
        'ratios': {key: round(value, 3) for key, value in class_ratios(classes).items()},
        'picked_systems': sorted(systems[index] for index in chosen),
        'selection_s': round(time.perf_counter() - start, 1),
    }
    return chosen, record


def main() -> None:
    from aiida_polyhydride.analysis.selection import pair_distribution_descriptor

    start = time.perf_counter()
    pool_systems, pool = _label(_pool_structures(SEED))
    test_systems, test = _label(_test_structures(SEED + 1))
    _, validation = _label(_pool_structures(SEED + 2)[:: len(pool) // N_VALIDATION][:N_VALIDATION])
    descriptors = np.array([pair_distribution_descriptor(frame, TYPE_NAMES, DESCRIPTOR_R_MAX) for frame in pool])

    settings = {
        'benchmark': 'learning_efficiency',
        'reference': 'synthetic species-pair Morse (analysis/synthetic.CaHMorseReference), NOT DFT: the comparison '
        'is about selection, not about the reference',
        'pool': {'n_frames': len(pool), 'systems': {s: pool_systems.count(s) for s in dict.fromkeys(pool_systems)}},
        'test': {'n_frames': len(test), 'systems': {s: test_systems.count(s) for s in dict.fromkeys(test_systems)}},
        'settings': {
            'seed': SEED,
            'n_repeats': N_REPEATS,
            'n_initial': N_INITIAL,
            'n_per_round': N_PER_ROUND,
            'n_rounds': N_ROUNDS,
            'committee_size': COMMITTEE_SIZE,
            'preset': 'tiny',
            'hyperparameters': HYPERPARAMETERS,
            'n_validation_frames': N_VALIDATION,
            'trust_window_quantiles': [LO_QUANTILE, HI_QUANTILE],
            'max_per_system': MAX_PER_SYSTEM,
            'strategies': STRATEGIES,
            'duplicate_tolerance': DUPLICATE_TOLERANCE,
            'model_evaluation': 'eager nequip checkpoint (best.ckpt) through NequIPCalculator, member 0 scored',
        },
    }
    with tempfile.TemporaryDirectory(prefix='bench-learning-efficiency-') as directory:
        trainer = Trainer(Path(directory), pool, validation)
        repeats = []
        for repeat in range(N_REPEATS):
            rounds = _compare(trainer, pool, pool_systems, descriptors, test, test_systems, seed=SEED + repeat)
            repeats.append({'seed': SEED + repeat, 'rounds': rounds})
            # written after every repeat, so a run cut short still leaves the repeats it finished
            result = {**settings, 'complete': repeat == N_REPEATS - 1, 'summary': _summary(repeats), 'repeats': repeats}
            _write(result, trainer, start)
    print(RESULTS.read_text())


def _compare(trainer: Trainer, pool, pool_systems, descriptors, test, test_systems, seed: int) -> list[dict]:
    """One repeat: every strategy from the same random initial set (drawn with ``seed``), N_ROUNDS rounds; random
    picks take as many frames as the capped selection did."""
    rng = np.random.default_rng(seed)
    initial = sorted(rng.choice(len(pool), N_INITIAL, replace=False).tolist())
    labelled = {name: list(initial) for name in STRATEGIES}
    rounds, scores = [], {}
    for round_index in range(N_ROUNDS + 1):
        entry = {'round': round_index, 'n_labels': {name: len(indices) for name, indices in labelled.items()}}
        for name, indices in labelled.items():
            key = tuple(sorted(indices))
            if key not in scores:  # round 0: every strategy holds the same initial set, one model
                member_0 = trainer.calculator(indices, seed=0)
                scores[key] = _force_rmse_mev(_predicted_forces(member_0, test), test, test_systems)
            entry[f'{name}_test_force_rmse_meV_A'] = scores[key]
        print(json.dumps({'seed': seed, **entry}), flush=True)
        if round_index < N_ROUNDS:
            for name, systems in STRATEGIES.items():
                if systems is None:
                    continue
                chosen, entry[f'{name}_selection'] = _active_learning_round(
                    trainer, labelled[name], pool, pool_systems, descriptors, systems == 'per_system'
                )
                labelled[name] += chosen
            budget = len(labelled['active_learning']) - len(labelled['random'])
            remaining = [index for index in range(len(pool)) if index not in set(labelled['random'])]
            labelled['random'] += sorted(rng.choice(remaining, budget, replace=False).tolist())
        rounds.append(entry)
    return rounds


def _summary(repeats: list[dict]) -> dict:
    """Per round: the held-out force RMSE (all test frames) of each strategy over the repeats (mean, standard
    deviation, each value) and in how many repeats each selection beat random picks. A round's budget can be smaller
    than n_initial + round x n_per_round when near-duplicate removal left fewer candidates than the cap: ``n_labels``
    lists each repeat's."""
    summary = {}
    for round_index in range(len(repeats[0]['rounds'])):
        rounds = [repeat['rounds'][round_index] for repeat in repeats]
        values = {name: [entry[f'{name}_test_force_rmse_meV_A']['all'] for entry in rounds] for name in STRATEGIES}
        summary[f'round_{round_index}'] = {
            'n_labels': {name: [entry['n_labels'][name] for entry in rounds] for name in STRATEGIES},
            **{
                name: {'mean': round(float(np.mean(v)), 1), 'std': round(float(np.std(v)), 1), 'values': v}
                for name, v in values.items()
            },
            'better_than_random': {
                name: sum(a < r for a, r in zip(values[name], values['random'], strict=True))
                for name in STRATEGIES
                if name != 'random'
            },
            'n_repeats': len(repeats),
        }
    return summary


def _write(result: dict, trainer: Trainer, start: float) -> None:
    result.update(
        date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        machine=f'{machine_description()}, CPU torch; load average '
        f'{os.getloadavg()[0]:.1f} when written (a shared machine: the wall times are not those of an idle one)',
        n_trainings=trainer.n_trainings,
        train_s=round(trainer.train_seconds, 1),
        wall_s=round(time.perf_counter() - start, 1),
        # CPU seconds of this process and its nequip-train children: the run's cost, whatever the machine's load
        cpu_s=round(sum(os.times()[:4]), 1),
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')


if __name__ == '__main__':
    main()
