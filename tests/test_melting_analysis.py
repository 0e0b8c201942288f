"""Surface-melting analysis (aiida_polyhydride.analysis): constructed cases whose answers are known.

Pure numpy/ASE/freud/spglib: no AiiDA profile is needed, so the session profile of conftest.py is overridden here.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import get_distances

from aiida_polyhydride.analysis.diffusion import (
    diffusion_coefficient,
    mean_squared_displacement,
    region_diffusivity,
    unwrap_positions,
)
from aiida_polyhydride.analysis.melting import calibrate_q6_threshold, metal_q6, molten_depth
from aiida_polyhydride.analysis.phase import identify_phase
from aiida_polyhydride.analysis.profiles import condensed_region, density_profile
from aiida_polyhydride.analysis.uptake import hydrogen_per_metal, hydrogen_uptake, uptake_rate
from aiida_polyhydride.structures import bulk_phase, liquid_like, rattle, slab_h2_interface

LAYER = 3.1  # Angstrom between the metal (001) planes of the default CaH4 I4/mmm prototype (c / 2)
BIN = 2.0  # Angstrom


@pytest.fixture(scope='session', autouse=True)
def aiida_profile():
    """These tests never touch AiiDA: no PostgreSQL profile (conftest.py) for this module."""
    yield None


@pytest.fixture(scope='session', autouse=True)
def run_aiida_broker_service():
    """No profile, so no broker either (overrides the aiida.tools.pytest_fixtures fixture for this module)."""
    yield None


@pytest.fixture(scope='module')
def q6_reference():
    crystal = bulk_phase('MH4-I4mmm').repeat((3, 3, 2))
    liquid = liquid_like('Ca', 4.0, n_metal=32, seed=3)
    return calibrate_q6_threshold(crystal, liquid, 'Ca')


@pytest.fixture(scope='module')
def slab():
    """CaH4 I4/mmm (001) slab, 6 metal planes at z = 0, 3.1, ..., 15.5 A, 16 Ca each, dense H2 above."""
    return slab_h2_interface('MH4-I4mmm', 'Ca', layers=3, repeats=(4, 4), seed=1)


def _metal_planes(atoms):
    return np.unique(atoms.positions[atoms.numbers != 1, 2].round(3))


def melt_top(atoms, n_layers, seed=0):
    """Copy whose slab atoms above the midplane below the top ``n_layers`` metal planes are put at random (same
    number of atoms in the same volume: thickness n_layers * LAYER), metal >= 2.4, metal-H >= 1.5, H-H >= 0.7 A."""
    rng = np.random.default_rng(seed)
    new = atoms.copy()
    planes = _metal_planes(atoms)
    z_cut = planes[-n_layers] - LAYER / 2
    z = new.positions[:, 2]
    chosen = np.flatnonzero((new.arrays['region'] == 0) & (z > z_cut))
    chosen = chosen[np.argsort(new.numbers[chosen] == 1, kind='stable')]  # metal atoms first
    fixed = list(np.setdiff1d(np.arange(len(new)), chosen))
    for index in chosen:
        is_metal = new.numbers[index] != 1
        others = np.array(fixed)
        limit = np.where(new.numbers[others] != 1, 2.4 if is_metal else 1.5, 1.5 if is_metal else 0.7)
        for _ in range(20000):
            trial = rng.random(3) * [1, 1, 0] @ new.cell.array
            trial[2] = z_cut + rng.random() * n_layers * LAYER
            if np.all(get_distances(trial, new.positions[others], cell=new.cell, pbc=True)[1][0] > limit):
                break
        else:
            raise RuntimeError('could not place a random atom')
        new.positions[index] = trial
        fixed.append(index)
    return new


def shift_z(atoms, fraction):
    new = atoms.copy()
    new.positions[:, 2] += fraction * new.cell[2, 2]
    new.wrap()
    return new


# ---------------------------------------------------------------- profiles and molten depth


def test_density_profile_counts_every_atom(slab):
    profile = density_profile(slab, bin_width=0.5)
    assert sum(c.sum() for c in profile['counts'].values()) == len(slab)
    assert profile['edges'][-1] == pytest.approx(slab.cell[2, 2])
    volume = slab.get_volume() / len(profile['centers'])
    assert profile['density']['Ca'].sum() * volume == pytest.approx(96)


def test_condensed_region_of_slab_and_across_the_boundary(slab):
    region = condensed_region(slab, 'Ca')
    assert region['has_surfaces'] and region['n_metal'] == 96
    assert region['lower'] == pytest.approx(0.0, abs=1e-6) and region['thickness'] == pytest.approx(5 * LAYER)
    shifted = condensed_region(shift_z(slab, 0.9), 'Ca')
    assert shifted['upper'] > shifted['height']  # straddles the cell boundary
    assert shifted['thickness'] == pytest.approx(5 * LAYER)
    assert shifted['n_metal'] == 96
    assert np.array_equal(shifted['mask'], region['mask'])


def test_perfect_crystal_slab_has_no_molten_layer(slab, q6_reference):
    assert q6_reference['solid'] > 0.5 and q6_reference['liquid'] < 0.3
    result = molten_depth(slab, 'Ca', q6_reference, bin_width=BIN, frame_interval_ps=0.1)
    assert result['top'][0] == 0.0 and result['bottom'][0] == 0.0
    assert not result['all_liquid'][0] and result['liquid_fraction'][0] == 0.0


@pytest.mark.parametrize('n_layers', [1, 3])
def test_molten_top_layers_are_measured(slab, q6_reference, n_layers):
    molten = melt_top(slab, n_layers)
    for frame in (molten, shift_z(molten, 0.75)):  # also with the slab across the cell boundary
        result = molten_depth(frame, 'Ca', q6_reference, bin_width=BIN, frame_interval_ps=0.1)
        assert abs(result['top'][0] - n_layers * LAYER) <= BIN
        assert result['bottom'][0] == 0.0


def test_molten_depth_heat_map_over_frames(slab, q6_reference):
    frames = [slab.copy(), melt_top(slab, 2)]
    for time_ps, frame in zip((0.0, 1.5), frames, strict=True):
        frame.info['time_ps'] = time_ps
    result = molten_depth(frames, 'Ca', q6_reference['threshold'], bin_width=BIN)
    assert np.array_equal(result['time_ps'], [0.0, 1.5])
    assert result['state'].shape == result['q6'].shape == (len(result['z']), 2)
    assert np.nansum(result['state'][:, 0]) == 0 and np.nansum(result['state'][:, 1]) >= 2
    assert result['top'][0] == 0.0 and result['top'][1] > LAYER


def test_fully_random_cell_is_all_liquid(q6_reference):
    liquid = liquid_like('Ca', 4.0, n_metal=48, seed=11)
    result = molten_depth(liquid, 'Ca', q6_reference, bin_width=BIN, frame_interval_ps=1.0)
    assert result['all_liquid'][0] and result['liquid_fraction'][0] == 1.0
    assert result['top'][0] == pytest.approx(result['thickness'][0])
    assert np.mean(metal_q6(liquid, 'Ca')) < q6_reference['threshold']


# ---------------------------------------------------------------- hydrogen uptake


@pytest.fixture(scope='module')
def interface():
    """CaH4 slab (bulk cut, H strictly between the outer metal planes) + 14 A of H2 above: 20 Ca, known H."""
    bulk = bulk_phase('MH4-I4mmm').repeat((2, 2, 3))
    z = bulk.positions[:, 2]
    z_top = z[bulk.numbers != 1].max()  # 6 metal planes: 0 ... 15.5 A, 4 Ca each minus ...
    keep = (bulk.numbers != 1) | ((z > 0.2) & (z < z_top - 0.2))
    slab = bulk[keep]
    slab.cell[2, 2] = z_top + 14.0
    return slab


def _add_h2(atoms, z_values):
    new = atoms.copy()
    for i, z in enumerate(z_values):
        x, y = 1.0 + 1.3 * (i % 3), 1.2 + 1.4 * (i // 3 % 3)
        new += Atoms('H2', positions=[(x, y, z), (x + 0.74, y, z)])
    return new


def test_h_per_metal_is_exact_and_ignores_the_reservoir(interface):
    n_metal = int(np.count_nonzero(interface.numbers != 1))
    n_h = int(np.count_nonzero(interface.numbers == 1))
    expected = n_h / n_metal
    assert hydrogen_per_metal(interface, 'Ca')['h_per_metal'] == expected
    assert hydrogen_per_metal(interface, 'Ca')['n_metal'] == n_metal
    z_top = interface.positions[interface.numbers != 1, 2].max()
    loaded = _add_h2(interface, z_top + np.array([5.0, 6.5, 8.0, 9.5, 11.0]))
    assert hydrogen_per_metal(loaded, 'Ca')['h_per_metal'] == expected
    for fraction in (0.5, 0.85):  # the slab straddles the cell boundary
        assert hydrogen_per_metal(shift_z(loaded, fraction), 'Ca')['h_per_metal'] == expected
    # H2 3 A above the top metal plane: inside a 3.5 A margin, but its nearest Ca is > 2.6 A away
    near = _add_h2(interface, [z_top + 3.0])
    assert hydrogen_per_metal(near, 'Ca', margin=3.5)['n_h'] == n_h + 2
    assert hydrogen_per_metal(near, 'Ca', margin=3.5, metal_cutoff=2.6)['n_h'] == n_h


def test_uptake_versus_time_and_rate(interface):
    z_top = interface.positions[interface.numbers != 1, 2].max()
    n_metal = int(np.count_nonzero(interface.numbers != 1))
    # one H2 per frame moves from the reservoir into the slab (placed at mid-height between two metal planes)
    frames = [_add_h2(interface, [LAYER * 1.5] * k + [z_top + 6.0] * (4 - k)) for k in range(5)]
    uptake = hydrogen_uptake(frames, 'Ca', frame_interval_ps=0.5)
    assert np.allclose(uptake['time_ps'], [0, 0.5, 1, 1.5, 2])
    assert np.allclose(np.diff(uptake['h_per_metal']), 2 / n_metal)
    rate = uptake_rate(uptake['time_ps'], uptake['h_per_metal'])
    assert rate['rate_per_ps'] == pytest.approx(4 / n_metal)
    assert uptake_rate([0, 1, 2, 3], [2.0, 2.5, 3.0, 5.0], t_end_ps=2)['rate_per_ps'] == pytest.approx(0.5)


# ---------------------------------------------------------------- phase identification


@pytest.mark.parametrize(
    ('name', 'make'),
    [
        ('MH4-I4mmm', lambda: bulk_phase('MH4-I4mmm')),
        ('MH4-I4mmm', lambda: rattle(bulk_phase('MH4-I4mmm'), 0.05, seed=1)),
        ('MH4-I4mmm', lambda: rattle(bulk_phase('MH4-I4mmm').repeat((2, 2, 1)), 0.05, seed=2)),
        ('MH2-Pnma', lambda: bulk_phase('MH2-Pnma')),
        ('MH2-Pnma', lambda: rattle(bulk_phase('MH2-Pnma').repeat((2, 2, 1)), 0.05, seed=3)),
        ('MH2-P63mmc', lambda: rattle(bulk_phase('MH2-P63mmc').repeat((2, 2, 2)), 0.05, seed=4)),
        ('MH6-Im-3m', lambda: bulk_phase('MH6-Im-3m')),
        ('MH6-Im-3m', lambda: rattle(bulk_phase('MH6-Im-3m').repeat((2, 2, 1)), 0.05, seed=5)),
    ],
)
def test_prototypes_are_identified(name, make):
    atoms = make()
    result = identify_phase(atoms, 'Ca')
    assert result['verdict'] == name
    assert result['h_per_metal'] == pytest.approx(int(name[2]))


def test_ideal_metal_sublattice_space_group():
    assert identify_phase(bulk_phase('MH4-I4mmm'), 'Ca')['metal_spacegroup'] == 'I4/mmm'
    assert identify_phase(bulk_phase('MH2-Pnma'), 'Ca')['metal_spacegroup'] == 'Pnma'


def test_slab_phase_and_liquid_are_told_apart(slab):
    assert identify_phase(slab, 'Ca')['verdict'] == 'MH4-I4mmm'
    for seed in (1, 2):
        liquid = identify_phase(liquid_like('Ca', 4.0, n_metal=32, seed=seed), 'Ca')
        assert liquid['verdict'] in ('liquid', 'unknown')
    assert identify_phase(liquid_like('Ca', 4.0, n_metal=32, seed=1), 'Ca')['verdict'] == 'liquid'


# ---------------------------------------------------------------- diffusion


def test_constant_velocity_is_unwrapped_across_the_boundary():
    cell = np.diag([6.0, 7.0, 8.0])
    start = np.array([[5.5, 1.0, 1.0], [1.0, 6.5, 7.9], [3.0, 3.0, 3.0]])
    velocity = np.array([[2.0, 0.0, 0.0], [0.0, 1.5, 1.0], [-1.0, -1.0, 2.0]])  # Angstrom per ps
    dt = 0.5  # ps: every step < half the cell
    frames = []
    for k in range(30):
        frame = Atoms('H3', positions=start + velocity * k * dt, cell=cell, pbc=True)
        frame.wrap()
        frames.append(frame)
    assert np.allclose(unwrap_positions(frames)[-1], start + velocity * 29 * dt)
    msd = mean_squared_displacement(frames, frame_interval_ps=dt)
    expected = (velocity**2).sum(axis=1).mean() * msd['time_ps'] ** 2
    assert np.allclose(msd['msd']['H'], expected, rtol=1e-6, atol=1e-3)  # freud's FFT


def test_random_walk_gives_the_known_diffusion_coefficient():
    rng = np.random.default_rng(7)
    sigma, dt, n_atoms, n_frames = 0.1, 0.01, 400, 200  # Angstrom per component per step, ps
    steps = rng.normal(0.0, sigma, size=(n_frames - 1, n_atoms, 3))
    positions = np.concatenate([np.zeros((1, n_atoms, 3)), np.cumsum(steps, axis=0)]) + rng.random(3) * 8
    cell = np.eye(3) * 8.0
    frames = []
    for p in positions:
        frame = Atoms(['H'] * n_atoms, positions=p, cell=cell, pbc=True)
        frame.wrap()
        frames.append(frame)
    msd = mean_squared_displacement(frames, frame_interval_ps=dt)
    fit = diffusion_coefficient(msd['time_ps'], msd['msd']['H'])
    expected = sigma**2 / (2 * dt)  # 0.5 Angstrom^2/ps
    assert fit['D_A2_per_ps'] == pytest.approx(expected, rel=0.1)
    assert fit['D_cm2_per_s'] == pytest.approx(fit['D_A2_per_ps'] * 1e-4)


def test_region_diffusivity_separates_slab_and_reservoir():
    rng = np.random.default_rng(3)
    slab = bulk_phase('MH4-I4mmm').repeat((2, 2, 2))  # 16 Ca, 64 H, static
    cell = slab.cell.array.copy()
    cell[2, 2] += 20.0
    n_gas, sigma, dt = 60, 0.1, 0.01
    gas0 = rng.random((n_gas, 3)) * [cell[0, 0], cell[1, 1], 11.0] + [0, 0, slab.cell[2, 2] + 3.0]
    walk = np.concatenate([np.zeros((1, n_gas, 3)), np.cumsum(rng.normal(0, sigma, (39, n_gas, 3)), axis=0)])
    frames = []
    for step in walk:
        frame = slab.copy() + Atoms(['H'] * n_gas, positions=gas0 + step)
        frame.set_cell(cell)
        frame.pbc = True
        frame.wrap()
        frames.append(frame)
    # margin 3 A: the slab's outermost H sit up to 2.7 A beyond its outermost metal plane; the gas >= 6 A away
    result = region_diffusivity(frames, 'Ca', window=20, margin=3.0, frame_interval_ps=dt)
    assert result['n_windows'] == 2
    assert result['n_atoms']['condensed'] == {'Ca': 16, 'H': 64}
    assert result['n_atoms']['reservoir'] == {'Ca': 0, 'H': n_gas}
    assert result['D_A2_per_ps']['condensed']['H'] == pytest.approx(0.0, abs=1e-9)
    assert result['D_A2_per_ps']['reservoir']['H'] == pytest.approx(sigma**2 / (2 * dt), rel=0.3)
    assert np.isnan(result['D_A2_per_ps']['reservoir']['Ca'])


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ('call', 'name'),
    [
        (lambda s: density_profile(s, bin_width=0.0), 'bin_width'),
        (lambda s: density_profile(s, bin_width=-1.0), 'bin_width'),
        (lambda s: molten_depth(s, 'Ca', 0.3, bin_width=0, frame_interval_ps=1), 'bin_width'),
        (lambda s: condensed_region(s, 'Xx'), 'metal'),
        (lambda s: condensed_region(s, 'La'), 'metal'),
        (lambda s: identify_phase(s, 'H'), 'metal'),
        (lambda s: hydrogen_uptake([], 'Ca', frame_interval_ps=1), 'frames'),
        (lambda s: molten_depth([], 'Ca', 0.3, frame_interval_ps=1), 'frames'),
        (lambda s: mean_squared_displacement([], frame_interval_ps=1), 'frames'),
        (lambda s: hydrogen_uptake([s, s], 'Ca'), 'frame_interval_ps'),
        (lambda s: condensed_region(s, 'Ca', axis=3), 'axis'),
        (lambda s: molten_depth(s, 'Ca', 1.5, frame_interval_ps=1), 'threshold'),
        (lambda s: hydrogen_per_metal(s, 'Ca', metal_cutoff=0), 'metal_cutoff'),
        (lambda s: region_diffusivity([s, s], 'Ca', window=5, frame_interval_ps=1), 'window'),
        (lambda s: uptake_rate([0, 1], [1, 2], t_start_ps=5), 't_start_ps'),
    ],
)
def test_bad_arguments_name_the_argument(slab, call, name):
    with pytest.raises(ValueError, match=name):
        call(slab)


# ---------------------------------------------------------------- one production run at once, uncertainty, reaction map


def test_analyse_production_combines_the_known_answers(slab, q6_reference):
    from aiida_polyhydride.analysis.surface_melting import analyse_production

    molten = melt_top(slab, 2)
    frames = [molten, molten.copy(), slab.copy(), slab.copy()]  # melted, then recrystallised
    for index, frame in enumerate(frames):
        frame.info['time_ps'] = 0.5 * index
    result = analyse_production(frames, 'Ca', q6_reference, order_bin_width=BIN, margin=0.0)
    summary, arrays = result['summary'], result['arrays']
    expected_h = hydrogen_per_metal(slab, 'Ca')['h_per_metal']  # the same atoms, only moved within the slab
    assert summary['final_h_per_metal'] == pytest.approx(expected_h)
    assert np.allclose(arrays['h_per_metal'], hydrogen_uptake(frames, 'Ca')['h_per_metal'])
    assert abs(summary['max_molten_depth_A'] - 2 * LAYER) <= BIN
    assert summary['final_molten_depth_A'] == 0.0
    assert np.array_equal(arrays['time_ps'], [0.0, 0.5, 1.0, 1.5])
    assert summary['phase'] == 'MH4-I4mmm'  # of the final (crystalline) frame
    assert summary['duration_ps'] == pytest.approx(1.5)
    assert arrays['order_q6'].shape == (len(arrays['order_z']), 4)
    n_ca = arrays['density_Ca_final'].sum() * slab.get_volume() / len(arrays['density_z_final'])
    assert n_ca == pytest.approx(96)
    assert summary['diffusion_window_ps'] is None  # 2 windows of 2 frames: too short for an MSD fit


def test_uncertainty_fraction_and_extrapolating_flag():
    from aiida_polyhydride.analysis.surface_melting import uncertainty_summary

    sigma = [0.02, 0.05, 0.12, 0.3, float('nan')]  # the NaN frame has no committee value: not counted
    doubtful = uncertainty_summary(sigma, lo=0.1, max_fraction=0.25)
    assert doubtful['fraction_above_lo'] == pytest.approx(0.5) and doubtful['n_frames'] == 4
    assert doubtful['extrapolating'] and doubtful['monitored']
    assert not uncertainty_summary(sigma, lo=0.1, max_fraction=0.5)['extrapolating']  # at the threshold: fine
    assert uncertainty_summary(sigma, lo=0.5, max_fraction=0.0)['fraction_above_lo'] == 0.0
    unmonitored = uncertainty_summary([float('nan')] * 3, lo=0.1, max_fraction=0.05)
    assert not unmonitored['monitored'] and unmonitored['fraction_above_lo'] is None
    with pytest.raises(ValueError, match='sigma_f_lo'):
        uncertainty_summary(sigma, lo=-1.0, max_fraction=0.1)


def test_reaction_map_is_sorted_and_flags_absorption():
    from aiida_polyhydride.analysis.surface_melting import reaction_map

    runs = [
        {'temperature_K': 1500, 'pressure_GPa': 40, 'initial_h_per_metal': 2.0, 'final_h_per_metal': 3.1,
         'uptake_rate_per_ps': 0.2, 'max_molten_depth_A': 6.0, 'phase': 'liquid'},
        {'temperature_K': 900, 'pressure_GPa': 40, 'initial_h_per_metal': 2.0, 'final_h_per_metal': 2.0,
         'uptake_rate_per_ps': 1e-14, 'max_molten_depth_A': 0.0, 'phase': 'MH2-Pnma', 'uncertainty_fraction': 0.0},
        {'temperature_K': 900, 'pressure_GPa': 20, 'initial_h_per_metal': 2.0, 'final_h_per_metal': 2.0,
         'uptake_rate_per_ps': None, 'max_molten_depth_A': 0.0, 'phase': 'MH2-Pnma'},
    ]  # fmt: skip
    table = reaction_map(runs)
    assert np.array_equal(table['temperature_K'], [900, 900, 1500])
    assert np.array_equal(table['pressure_GPa'], [20, 40, 40])
    assert table['phase'] == ['MH2-Pnma', 'MH2-Pnma', 'liquid']
    assert np.array_equal(table['absorbs'], [False, False, True])  # a constant H/M's fitting noise is no uptake
    assert np.isnan(table['uptake_rate_per_ps'][0]) and np.isnan(table['uncertainty_fraction'][2])
    with pytest.raises(ValueError, match='summaries'):
        reaction_map([])


def test_plots_are_png(slab, q6_reference):
    from aiida_polyhydride.analysis import plots

    frames = [slab, melt_top(slab, 1)]
    result = molten_depth(frames, 'Ca', q6_reference, bin_width=BIN, frame_interval_ps=0.1)
    profile = density_profile(slab)
    figures = [
        plots.plot_uptake([0, 1, 2], [2.0, 2.2, 2.5], 0.25, 1.98),
        plots.plot_order_map(result['time_ps'], result['z'], result['q6'], 0.39, result['top'], result['bottom']),
        plots.plot_density_profiles({'initial': (profile['centers'], profile['density'])}),
        plots.plot_reaction_map([900, 1500], [40, 40], [0.0, 0.2], ['MH2-Pnma', 'liquid']),
    ]
    for content in figures:
        assert content[:8] == b'\x89PNG\r\n\x1a\n' and len(content) > 1000
