"""Frame selection for relabelling: trust window, duplicates, farthest-point sampling and caps."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from aiida_polyhydride.analysis.selection import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    class_ratios,
    classify,
    farthest_point_sampling,
    pair_distribution_descriptor,
    remove_near_duplicates,
    select_candidates,
)
from aiida_polyhydride.structures import rattle


def test_trust_window_classes_and_ratios():
    classes = classify([0.01, 0.05, 0.2, 0.3, np.nan], lo=0.05, hi=0.3)
    assert classes.tolist() == [ACCURATE, CANDIDATE, CANDIDATE, FAILED, FAILED]
    assert class_ratios(classes) == {'accurate': 0.2, 'candidate': 0.4, 'failed': 0.4}
    with pytest.raises(ValueError, match='trust window'):
        classify([0.1], lo=0.3, hi=0.2)


def test_descriptor_is_invariant_and_sensitive():
    atoms = bulk('CaH', 'rocksalt', a=4.4) * (2, 2, 2)
    reference = pair_distribution_descriptor(atoms, ['Ca', 'H'])
    moved = atoms.copy()
    moved.translate([0.3, 0.1, 0.7])
    moved.wrap()
    permuted = atoms[np.random.default_rng(0).permutation(len(atoms))]
    assert np.allclose(pair_distribution_descriptor(moved, ['Ca', 'H']), reference)
    assert np.allclose(pair_distribution_descriptor(permuted, ['Ca', 'H']), reference)
    rattled = pair_distribution_descriptor(rattle(atoms, stdev=0.2, seed=1), ['Ca', 'H'])
    assert np.linalg.norm(rattled - reference) > 0.05


def test_duplicates_removed_and_fps_spreads():
    points = np.array([[0.0, 0.0], [0.001, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert remove_near_duplicates(points, 0.01).tolist() == [0, 2, 3, 4]
    assert sorted(farthest_point_sampling(points, 3).tolist()) == [0, 2, 3]
    assert len(farthest_point_sampling(np.zeros((4, 2)), 3)) == 1  # copies only: one pick


def test_selection_respects_caps_and_never_picks_duplicates():
    rng = np.random.default_rng(3)
    descriptors = rng.normal(size=(60, 8))
    descriptors[30:40] = descriptors[30]  # ten copies of one frame in system B
    systems = ['A'] * 30 + ['B'] * 30
    classes = np.full(60, CANDIDATE)
    classes[::7] = ACCURATE
    selected = select_candidates(descriptors, classes, systems, max_per_system=6, max_total=9)
    assert len(selected) == 9
    assert all(classes[index] == CANDIDATE for index in selected)
    per_system = {system: sum(systems[index] == system for index in selected) for system in 'AB'}
    assert max(per_system.values()) <= 6
    picked = descriptors[selected]
    distances = np.linalg.norm(picked[:, None] - picked[None, :], axis=2)[np.triu_indices(len(selected), 1)]
    assert distances.min() > 0.02  # no two picks are duplicates
    # without caps: every candidate (60 - 9 accurate) once, the nine candidate copies of frame 30 counted once
    everything = select_candidates(descriptors, classes, systems, max_per_system=100, max_total=1000)
    assert len(everything) == 60 - 9 - 8


def test_selection_picks_the_most_novel_frames_wherever_they_are_within_the_caps():
    """Farthest-point sampling runs over all systems' candidates: a system of near-alike frames yields few picks
    while a diverse one has room under its cap; once the diverse one is full, the rest come from the others."""
    rng = np.random.default_rng(0)
    alike = 5.0 + rng.normal(scale=0.05, size=(20, 8))  # distinct (beyond the duplicate tolerance), close together
    diverse = rng.normal(size=(20, 8))
    descriptors = np.concatenate([alike, diverse])
    systems = ['alike'] * 20 + ['diverse'] * 20
    classes = np.full(40, CANDIDATE)

    def count(selected):
        return {system: sum(systems[index] == system for index in selected) for system in ('alike', 'diverse')}

    assert count(select_candidates(descriptors, classes, systems, max_per_system=10, max_total=10)) == {
        'alike': 1,
        'diverse': 9,
    }
    capped = select_candidates(descriptors, classes, systems, max_per_system=6, max_total=10)
    assert count(capped) == {'alike': 4, 'diverse': 6}
    assert len(set(capped.tolist())) == 10
    assert len(select_candidates(descriptors, classes, systems, max_per_system=0, max_total=10)) == 0
