"""Choosing frames to relabel from exploration MD: trust window, near-duplicate removal, farthest-point sampling, caps.

Frames are classified by their committee force deviation sigma_F (eV/Angstrom) against a trust window [lo, hi):
accurate (sigma_F < lo), candidate (lo <= sigma_F < hi), failed (sigma_F >= hi: too far out to trust even the
structure). Candidates are then made diverse on a structural descriptor: near duplicates are dropped and the rest
are picked by farthest-point sampling, within a cap per system and per iteration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

__all__ = (
    'ACCURATE',
    'CANDIDATE',
    'FAILED',
    'class_ratios',
    'classify',
    'farthest_point_sampling',
    'pair_distribution_descriptor',
    'remove_near_duplicates',
    'select_candidates',
)

ACCURATE, CANDIDATE, FAILED = 0, 1, 2


def classify(sigma_f: Sequence[float], lo: float, hi: float) -> np.ndarray:
    """Per frame: ACCURATE (sigma_F < lo), CANDIDATE (lo <= sigma_F < hi) or FAILED (>= hi, or NaN)."""
    if not 0 <= lo < hi:
        raise ValueError(f'trust window: need 0 <= lo < hi, got lo={lo}, hi={hi}')
    sigma = np.asarray(sigma_f, dtype=float)
    classes = np.full(sigma.shape, FAILED, dtype=int)
    classes[sigma < hi] = CANDIDATE
    classes[sigma < lo] = ACCURATE
    return classes


def class_ratios(classes: Sequence[int]) -> dict[str, float]:
    """Fractions of accurate / candidate / failed frames (all 0 for no frames)."""
    classes = np.asarray(classes)
    n = max(len(classes), 1)
    return {
        name: float(np.count_nonzero(classes == value)) / n
        for name, value in (('accurate', ACCURATE), ('candidate', CANDIDATE), ('failed', FAILED))
    }


def pair_distribution_descriptor(
    atoms: Atoms, species: Sequence[str], r_max: float = 5.0, n_bins: int = 25, width: float = 0.2
) -> np.ndarray:
    """Gaussian-smeared partial pair-distance histograms per species pair, per atom of the frame (unit norm).

    Invariant to translation, rotation and permutation of like atoms; cheap enough for thousands of MD frames.
    """
    if r_max <= 0 or n_bins < 2 or width <= 0:
        raise ValueError(f'descriptor: need r_max > 0, n_bins >= 2, width > 0; got {r_max}, {n_bins}, {width}')
    species = list(species)
    pairs = [(a, b) for index, a in enumerate(species) for b in species[index:]]
    centres = np.linspace(0.0, r_max, n_bins)
    first, second, distances = neighbor_list('ijd', atoms, r_max)
    symbols = np.array(atoms.get_chemical_symbols())
    blocks = []
    for a, b in pairs:
        mask = ((symbols[first] == a) & (symbols[second] == b)) | ((symbols[first] == b) & (symbols[second] == a))
        smeared = np.exp(-((centres[None, :] - distances[mask][:, None]) ** 2) / (2 * width**2)).sum(axis=0)
        blocks.append(smeared / len(atoms))
    vector = np.concatenate(blocks)
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def remove_near_duplicates(descriptors: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of descriptors kept in order, dropping any within ``tolerance`` (Euclidean) of one already kept."""
    descriptors = np.asarray(descriptors, dtype=float)
    kept: list[int] = []
    for index, vector in enumerate(descriptors):
        if all(np.linalg.norm(vector - descriptors[other]) > tolerance for other in kept):
            kept.append(index)
    return np.asarray(kept, dtype=int)


def farthest_point_sampling(
    descriptors: np.ndarray,
    n: int,
    first: int = 0,
    groups: Sequence | None = None,
    max_per_group: int | None = None,
) -> np.ndarray:
    """``n`` indices chosen greedily, each the farthest from those already chosen (starting at ``first``); with
    ``groups`` (one label per descriptor), a group holding ``max_per_group`` picks gets no more."""
    descriptors = np.asarray(descriptors, dtype=float)
    if n <= 0 or len(descriptors) == 0 or max_per_group == 0:
        return np.zeros(0, dtype=int)
    groups = np.zeros(len(descriptors), dtype=int) if groups is None else np.asarray(groups)
    counts: dict = {}
    distance = np.full(len(descriptors), np.inf)
    chosen: list[int] = []
    index = first
    while True:
        chosen.append(index)
        counts[groups[index]] = counts.get(groups[index], 0) + 1
        distance = np.minimum(distance, np.linalg.norm(descriptors - descriptors[index], axis=1))
        if max_per_group is not None and counts[groups[index]] >= max_per_group:
            distance[groups == groups[index]] = -np.inf  # a full group: never picked again
        if len(chosen) >= min(n, len(descriptors)):
            break
        index = int(np.argmax(distance))
        if distance[index] <= 0:
            break  # only exact copies of chosen frames (or full groups) are left
    return np.asarray(chosen, dtype=int)


def select_candidates(
    descriptors: np.ndarray,
    classes: Sequence[int],
    systems: Sequence[str],
    max_per_system: int,
    max_total: int,
    duplicate_tolerance: float = 0.02,
) -> np.ndarray:
    """Indices of candidate frames to relabel: near duplicates dropped within each system, then farthest-point
    sampling over the candidates of all systems together, so the most novel frames are picked wherever they come
    from; a system holding ``max_per_system`` picks gets no more, and at most ``max_total`` are picked.

    In benchmarks/bench_learning_efficiency.py this beats random picks of the same budget (more so without a tight
    per-system cap); sharing the picks out over systems in turn (round-robin, before Nov 2026) spent labels on
    near-ordered cells and did worse than random picks."""
    if max_per_system < 0 or max_total < 0:
        raise ValueError(f'caps: need max_per_system >= 0 and max_total >= 0, got {max_per_system}, {max_total}')
    descriptors = np.asarray(descriptors, dtype=float)
    classes = np.asarray(classes)
    systems = np.asarray(systems)
    if not len(descriptors) == len(classes) == len(systems):
        raise ValueError('descriptors, classes and systems must have one entry per frame')
    candidates = []
    for system in dict.fromkeys(systems.tolist()):
        indices = np.flatnonzero((systems == system) & (classes == CANDIDATE))
        candidates.extend(indices[remove_near_duplicates(descriptors[indices], duplicate_tolerance)].tolist())
    candidates = np.asarray(candidates, dtype=int)
    picks = farthest_point_sampling(
        descriptors[candidates], max_total, groups=systems[candidates], max_per_group=max_per_system
    )
    return np.asarray(sorted(candidates[picks].tolist()), dtype=int)
