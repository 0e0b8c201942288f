"""Errors of predictions against labels, per system, and the model card written from them (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.units import GPa

from aiida_polyhydride.analysis.frames import label_frame
from aiida_polyhydride.analysis.model_card import error_table
from aiida_polyhydride.analysis.model_errors import prediction_errors


def _frame(system: str, n_repeat: int, seed: int):
    atoms = bulk('CaH', 'rocksalt', a=4.5).repeat((n_repeat, 1, 1))
    rng = np.random.default_rng(seed)
    frame = label_frame(atoms, -10.0 * len(atoms), rng.normal(size=(len(atoms), 3)), rng.normal(size=6) * 0.01)
    frame.info['origin_system'] = system
    return frame


def test_known_offsets_give_known_errors_per_system():
    frames = [_frame('A', 1, 0), _frame('A', 2, 1), _frame('B', 1, 2)]
    predictions = []
    for frame in frames:
        labels = frame.calc.results
        forces = labels['forces'].copy()
        if frame.info['origin_system'] == 'B':
            forces[0, 0] += 0.3  # one component of 6 off by 300 meV/A
        predictions.append(
            {
                'energy': labels['energy'] + 0.002 * len(frame) * (1 if frame.info['origin_system'] == 'A' else -1),
                'forces': forces,
                'stress': labels['stress'] + (1.0 * GPa if frame.info['origin_system'] == 'B' else 0.0),
            }
        )
    errors = prediction_errors(frames, predictions)
    a, b = errors['systems']['A'], errors['systems']['B']
    assert a['n_frames'] == 2 and b['n_frames'] == 1 and errors['all']['n_frames'] == 3
    assert a['energy_rmse_meV_per_atom'] == pytest.approx(2.0) and b['energy_mae_meV_per_atom'] == pytest.approx(2.0)
    assert a['forces_rmse_meV_per_A'] == pytest.approx(0.0, abs=1e-9)
    assert b['forces_rmse_meV_per_A'] == pytest.approx(300.0 / np.sqrt(6))
    assert a['stress_rmse_GPa'] == pytest.approx(0.0, abs=1e-9) and b['stress_rmse_GPa'] == pytest.approx(1.0)
    n_components = 3 * sum(len(frame) for frame in frames)
    assert errors['all']['forces_rmse_meV_per_A'] == pytest.approx(300.0 / np.sqrt(n_components))
    table = error_table(errors)
    assert '| A | 2 | 2.0 | 0 | 0.00 |' in table and '| **all** | 3 |' in table


def test_mismatched_inputs_are_refused():
    frame = _frame('A', 1, 0)
    with pytest.raises(ValueError, match='1 reference frames but 2 predictions'):
        prediction_errors([frame], [{}, {}])
    with pytest.raises(ValueError, match=r'predicted forces of shape \(1, 3\), expected \(2, 3\)'):
        prediction_errors([frame], [{'energy': 0.0, 'forces': np.zeros((1, 3))}])
    unlabelled = frame.copy()
    with pytest.raises(ValueError, match='reference frame 0 carries no energy and forces'):
        prediction_errors([unlabelled], [{'energy': 0.0, 'forces': np.zeros((2, 3))}])
