"""The numerics and builders behind the active-learning loop: calibration, convergence, observables, seeds, plots."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from aiida_polyhydride.analysis import active_learning as decisions
from aiida_polyhydride.analysis.plots import plot_force_parity, plot_learning_history
from aiida_polyhydride.structures import domain

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def test_max_force_error_is_the_largest_atom_error():
    reference = np.zeros((3, 3))
    predicted = reference.copy()
    predicted[1] = [0.3, 0.4, 0.0]
    predicted[2] = [0.1, 0.0, 0.0]
    assert decisions.max_force_error(predicted, reference) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='forces'):
        decisions.max_force_error(np.zeros((3, 3)), np.zeros((2, 3)))


def test_calibration_puts_accurate_frames_below_the_target():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.01, 0.5, size=200)
    error = sigma * rng.uniform(1.0, 3.0, size=200)  # the true error is 1-3 x sigma_F
    window = decisions.calibrate_trust_window(sigma, error, target_error=0.1, hi_over_lo=5.0, previous=(0.05, 0.25))
    assert window['calibrated']
    assert window['ratio_quantile'] == pytest.approx(np.quantile(error / sigma, 0.9))
    assert window['lo'] == pytest.approx(0.1 / window['ratio_quantile'])
    assert window['hi'] == pytest.approx(5.0 * window['lo'])
    # 90 % quantile: almost every frame called accurate has a true error below the target
    accurate = sigma < window['lo']
    assert accurate.sum() > 0
    assert np.mean(error[accurate] < 0.1) > 0.85
    assert window['accurate_error_max'] == pytest.approx(error[accurate].max())
    # a worse committee (error 3-9 x sigma_F) must get a tighter window
    worse = decisions.calibrate_trust_window(sigma, 3 * error, 0.1, 5.0, previous=(0.05, 0.25))
    assert worse['lo'] < window['lo']


def test_calibration_keeps_the_window_without_enough_frames():
    window = decisions.calibrate_trust_window([0.1, 0.0], [0.2, 0.1], 0.1, 5.0, previous=(0.05, 0.25), min_frames=2)
    assert not window['calibrated']
    assert (window['lo'], window['hi']) == (0.05, 0.25)
    assert 'fewer than min_frames' in window['reason']
    with pytest.raises(ValueError, match='hi_over_lo'):
        decisions.calibrate_trust_window([0.1], [0.1], 0.1, 1.0, previous=(0.05, 0.25))


def test_convergence_needs_every_system_for_consecutive_iterations():
    good = {'CaH4_bulk': {'accurate': 0.97}, 'H2_fluid': {'accurate': 0.99}}
    one_bad = {'CaH4_bulk': {'accurate': 0.97}, 'H2_fluid': {'accurate': 0.90}}
    assert decisions.iterations_accurate(good, 0.95)
    assert not decisions.iterations_accurate(one_bad, 0.95)
    assert not decisions.iterations_accurate({}, 0.95)
    assert not decisions.consecutive_converged([True], 2)
    assert not decisions.consecutive_converged([True, False], 2)
    assert decisions.consecutive_converged([False, True, True], 2)
    assert decisions.observable_converged([1.20, 1.31, 1.305], tolerance=0.01)
    assert not decisions.observable_converged([1.20, 1.31], tolerance=0.01)
    assert not decisions.observable_converged([1.20], tolerance=1.0)


def test_trajectory_observables():
    copper = bulk('Cu', a=3.6, cubic=True)  # 8.96 g/cm^3 at a = 3.6 A: 4 x 63.546 u / 3.6^3 A^3
    expected = 4 * 63.546 * 1.66053906660e-24 / (3.6e-8) ** 3
    result = decisions.trajectory_observable([copper, copper], 'density')
    assert result['value'] == pytest.approx(expected, rel=1e-4)
    assert result['stderr'] == pytest.approx(0.0)
    cah4 = domain.exploration_systems('Ca', size='tiny')['CaH4_bulk']
    assert decisions.trajectory_observable([cah4], 'h_per_m')['value'] == pytest.approx(4.0)
    with pytest.raises(ValueError, match='unknown'):
        decisions.trajectory_observable([cah4], 'viscosity')


def test_seeds_cover_the_training_domain_at_every_pressure():
    frames = domain.training_domain_seeds('Ca', [20.0, 60.0], n_rattled=1, seed=3)
    systems = {frame.info['origin_system'] for frame in frames}
    assert {'CaH2-Pnma_bulk', 'CaH2-P63mmc_bulk', 'CaH4-I4mmm_bulk', 'CaH6-Im-3m_bulk', 'H2_fluid'} <= systems
    assert {'CaH3', 'CaH5', 'CaH4_liquid', 'CaH2_slab_H2'} <= systems
    assert {frame.info['origin_pressure_GPa'] for frame in frames} == {20.0, 60.0}
    # higher pressure, smaller volume per atom for the same phase
    volumes = {
        frame.info['origin_pressure_GPa']: frame.get_volume() / len(frame)
        for frame in frames
        if frame.info['origin_system'] == 'CaH4-I4mmm_bulk'
    }
    assert volumes[60.0] < volumes[20.0]
    assert domain.h2_density(60.0) > domain.h2_density(20.0)
    again = domain.training_domain_seeds('Ca', [20.0, 60.0], n_rattled=1, seed=3)
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(frames, again, strict=True))
    with pytest.raises(ValueError, match='pressure'):
        domain.training_domain_seeds('Ca', [-5.0])
    with pytest.raises(ValueError):
        domain.training_domain_seeds('Xx', [40.0])


def test_exploration_systems_by_size():
    tiny = domain.exploration_systems('Ca', 40.0, 'tiny')
    small = domain.exploration_systems('Ca', 40.0, 'small')
    assert set(tiny) == {'CaH2_bulk', 'CaH4_bulk', 'H2_fluid'}
    assert 'CaH2_slab_H2' in small
    assert all(len(small[name]) > len(tiny[name]) for name in tiny)
    with pytest.raises(ValueError, match='size'):
        domain.exploration_systems('Ca', 40.0, 'huge')


def test_compact_exploration_covers_the_domain_in_small_cells():
    compact = domain.exploration_systems('Ca', 40.0, 'compact')
    compositions = {name: atoms.get_chemical_symbols().count('H') / max(1, atoms.get_chemical_symbols().count('Ca'))
                    for name, atoms in compact.items()}  # fmt: skip
    assert compositions['CaH2_Pnma_bulk'] == compositions['CaH2_bulk'] == 2.0
    assert compositions['CaH4_bulk'] == 4.0 and compositions['CaH6_bulk'] == 6.0
    assert compositions['CaH3_liquid'] == 3.0 and compositions['CaH5_liquid'] == 5.0
    assert {'H2_fluid', 'CaH2_slab_H2', 'CaH4_slab_H2'} <= set(compact)
    assert all(12 <= len(atoms) <= 24 for atoms in compact.values())
    denser = domain.exploration_systems('Ca', 60.0, 'compact')
    assert all(denser[name].get_volume() < compact[name].get_volume() for name in compact)


def test_near_cubic_supercell_evens_out_a_layered_cell():
    from aiida_polyhydride.structures._geometry import perpendicular_widths

    primitive = domain.exploration_systems('Ca', 40.0, 'tiny')['CaH4_bulk']  # widths about 2.7, 2.7, 2.1 Angstrom
    supercell = domain.near_cubic_supercell(primitive, 20)
    assert len(supercell) == 20
    assert supercell.get_volume() == pytest.approx(4 * primitive.get_volume())
    widths = perpendicular_widths(supercell.cell)
    assert widths.min() > 1.2 * perpendicular_widths(primitive.cell).max()  # not a 4x1x1 stack
    assert len(domain.near_cubic_supercell(primitive, 3)) == len(primitive)


def test_plots_are_pngs():
    history = [
        {'iteration': 1, 'validation_forces_rmse': 300.0, 'ratios': {'CaH4_bulk': {'accurate': 0.2}}},
        {'iteration': 2, 'validation_forces_rmse': 200.0, 'ratios': {'CaH4_bulk': {'accurate': 0.6}}},
    ]
    assert plot_learning_history(history).startswith(PNG_MAGIC)
    assert plot_force_parity(np.arange(6.0), np.arange(6.0) + 0.1).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match='equal'):
        plot_force_parity(np.arange(6.0), np.arange(5.0))


def test_calibration_result_has_no_nan():
    """Undefined values are None: the result is stored as an AiiDA Dict, which refuses NaN."""
    window = decisions.calibrate_trust_window([0.1, 0.1], [0.3, 0.3], 0.1, 5.0, previous=(0.05, 0.25), min_frames=2)
    assert window['calibrated']
    assert window['correlation'] is None  # constant sigma_F
    assert window['accurate_error_max'] is None  # no frame below the new lo
    values = [value for value in window.values() if isinstance(value, float)]
    assert all(np.isfinite(values))
