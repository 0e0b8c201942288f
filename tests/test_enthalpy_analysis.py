"""analysis/enthalpy.py on constructed data: units, reaction bookkeeping, sign changes, melting brackets; the cells."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_polyhydride.analysis.enthalpy import (
    GPA_A3_IN_EV,
    bracket_melting_temperature,
    coexistence_verdict,
    enthalpy,
    hysteresis_melting_temperature,
    md_enthalpy,
    phase_role,
    ramp_transition_temperature,
    reaction_enthalpies,
    sign_changes,
)


def test_pv_term_in_ev():
    # 1 GPa * 160.21766 A^3 = 1.6021766e-19 J = 1 eV
    assert enthalpy(0.0, 160.21766208, 1.0) == pytest.approx(1.0)
    assert np.isclose(GPA_A3_IN_EV, 1e9 * 1e-30 / 1.602176634e-19, rtol=1e-8)
    assert enthalpy(-10.0, 20.0, 40.0) == pytest.approx(-10.0 + 40 * 20 / 160.21766208)
    np.testing.assert_allclose(enthalpy([1.0, 2.0], [10.0, 10.0], [0.0, 100.0]), [1.0, 2.0 + 1000 / 160.21766208])


@pytest.mark.parametrize(
    ('symbols', 'expected'),
    [
        (['Ca', 'H', 'H'] * 2, ('MH2', 2)),
        (['Ca'] + ['H'] * 4, ('MH4', 1)),
        (['La'] * 2 + ['H'] * 12, ('MH6', 2)),
        (['H'] * 4, ('H2', 2)),
    ],
)
def test_phase_role_from_composition(symbols, expected):
    assert phase_role(symbols) == expected


@pytest.mark.parametrize('symbols', [['Ca', 'H', 'H', 'H'], ['H'] * 3, ['Ca', 'Sr', 'H', 'H', 'H', 'H'], []])
def test_phase_role_refuses_other_compositions(symbols):
    with pytest.raises(ValueError, match=r'H2|MH2|H atoms'):
        phase_role(symbols)


def test_reaction_enthalpy_uses_the_lower_mh2_polymorph_and_counts_h2():
    pressures = [40.0, 10.0, 20.0]  # unsorted on purpose: results come sorted by pressure
    enthalpies = {
        'MH2_a': [-1.0, -2.0, -1.5],
        'MH2_b': [-1.2, -1.9, np.nan],  # lower than a at 40 GPa only; failed at 20 GPa
        'H2': [-0.5, -0.7, -0.6],
        'MH4': [-2.9, -3.0, -2.8],
        'MH6': [-4.0, -4.0, -4.0],
    }
    roles = {'MH2_a': 'MH2', 'MH2_b': 'MH2', 'H2': 'H2', 'MH4': 'MH4', 'MH6': 'MH6'}
    result = reaction_enthalpies(pressures, enthalpies, roles)
    np.testing.assert_allclose(result['pressure_GPa'], [10.0, 20.0, 40.0])
    assert result['lowest_phase']['MH2'] == ['MH2_a', 'MH2_a', 'MH2_b']
    # MH4 - MH2 - H2 and MH6 - MH2 - 2 H2, per metal atom
    np.testing.assert_allclose(result['delta_H']['MH4'], [-3.0 + 2.0 + 0.7, -2.8 + 1.5 + 0.6, -2.9 + 1.2 + 0.5])
    np.testing.assert_allclose(result['delta_H']['MH6'], [-4.0 + 2.0 + 1.4, -4.0 + 1.5 + 1.2, -4.0 + 1.2 + 1.0])


def test_missing_role_gives_nan_not_a_wrong_number():
    roles = {'MH2': 'MH2', 'H2': 'H2', 'MH4': 'MH4'}
    result = reaction_enthalpies([10.0, 20.0], {'MH2': [np.nan, -2.0], 'H2': [-1.0, -1.0], 'MH4': [-3.5, -3.5]}, roles)
    assert np.isnan(result['delta_H']['MH4'][0])
    assert result['delta_H']['MH4'][1] == pytest.approx(-0.5)
    assert 'MH6' not in result['delta_H']


def test_sign_change_interpolated_between_bracketing_points():
    # Delta H = 0.3 - 0.02 P crosses zero at 15 GPa
    pressures = np.array([0.0, 10.0, 20.0, 30.0])
    crossings = sign_changes(pressures, 0.3 - 0.02 * pressures)
    assert len(crossings) == 1
    assert crossings[0]['pressure_GPa'] == pytest.approx(15.0)
    assert crossings[0]['bracket_GPa'] == [10.0, 20.0]
    assert crossings[0]['bracket_values'] == pytest.approx([0.1, -0.1])
    assert crossings[0]['direction'] == 'to_negative'


def test_sign_changes_skip_nan_and_find_both_directions():
    pressures = [0.0, 10.0, 20.0, 30.0, 40.0]
    values = [0.2, np.nan, -0.2, -0.1, 0.3]
    crossings = sign_changes(pressures, values)
    assert [c['direction'] for c in crossings] == ['to_negative', 'to_positive']
    assert crossings[0]['bracket_GPa'] == [0.0, 20.0]  # the NaN point is skipped
    assert crossings[0]['pressure_GPa'] == pytest.approx(10.0)
    assert crossings[1]['pressure_GPa'] == pytest.approx(32.5)
    assert sign_changes([0.0, 10.0], [0.1, 0.2]) == []
    assert sign_changes([0.0, 10.0], [0.1, 0.0])[0]['pressure_GPa'] == 10.0


def test_md_enthalpy_drops_equilibration_and_divides_by_formula_units():
    energies = np.r_[np.full(2, 100.0), np.full(8, -10.0)]
    volumes = np.r_[np.full(2, 1.0), np.full(8, 80.0)]
    result = md_enthalpy(energies, volumes, 40.0, n_formula_units=4, equilibration_fraction=0.2)
    assert result['n_frames'] == 8
    assert result['enthalpy'] == pytest.approx((-10.0 + 40.0 * 80.0 * GPA_A3_IN_EV) / 4)
    assert result['volume'] == pytest.approx(20.0)
    assert result['enthalpy_error'] == pytest.approx(0.0)
    with pytest.raises(ValueError, match='equal non-empty'):
        md_enthalpy([1.0], [1.0, 2.0], 1.0, 1)


def test_coexistence_verdicts_and_melting_bracket():
    assert coexistence_verdict([0.5, 0.6, 0.8, 0.9, 0.95])['verdict'] == 'solid'
    assert coexistence_verdict([0.5, 0.4, 0.2, 0.1, 0.0])['verdict'] == 'liquid'
    assert coexistence_verdict([0.5, 0.52, 0.49, 0.51])['verdict'] == 'coexisting'
    bracket = bracket_melting_temperature([1000, 1500, 2000, 2500], ['solid', 'solid', 'liquid', 'liquid'])
    assert bracket['status'] == 'bracketed'
    assert (bracket['solid_below'], bracket['liquid_above']) == (1500.0, 2000.0)
    assert bracket['melting_temperature'] == pytest.approx(1750.0)
    assert bracket['uncertainty'] == pytest.approx(250.0)
    assert bracket_melting_temperature([1000, 1500], ['solid', 'solid'])['status'] == 'above'
    assert bracket_melting_temperature([1000, 1500], ['liquid', 'coexisting'])['status'] == 'below'
    assert bracket_melting_temperature([1000, 1500], ['liquid', 'solid'])['status'] == 'inconsistent'


def test_ramp_transitions_and_hysteresis_estimate():
    temperatures = np.linspace(300.0, 3000.0, 28)
    heating = np.where(temperatures < 2150.0, 0.9, 0.05)
    t_plus = ramp_transition_temperature(temperatures, heating, heating=True)
    assert 2100.0 < t_plus < 2200.0
    cooling_t = temperatures[::-1]
    cooling = np.where(cooling_t > 1350.0, 0.05, 0.9)
    t_minus = ramp_transition_temperature(cooling_t, cooling, heating=False)
    assert 1300.0 < t_minus < 1400.0
    assert ramp_transition_temperature(temperatures, np.full(28, 0.9), heating=True) is None
    estimate = hysteresis_melting_temperature(2000.0, 1000.0)
    assert estimate['melting_temperature'] == pytest.approx(3000.0 - np.sqrt(2.0e6))
    assert estimate['hysteresis'] == pytest.approx(1000.0)
    assert hysteresis_melting_temperature(None, 1000.0)['melting_temperature'] is None


def test_solid_h2_and_two_phase_cell():
    from aiida_polyhydride.analysis.enthalpy import solid_fraction
    from aiida_polyhydride.structures import bulk_phase
    from aiida_polyhydride.structures.enthalpy_cells import solid_h2, solid_liquid_cell

    h2 = solid_h2(volume_per_molecule=11.0)
    assert len(h2) == 4
    assert h2.get_volume() / 2 == pytest.approx(11.0)
    distances = np.sort(h2.get_all_distances(mic=True)[0])[1:]
    assert distances[0] == pytest.approx(0.74)
    assert distances[1] > 1.5  # molecules, not a chain

    solid = bulk_phase('MH4-I4mmm', 'Ca') * (2, 2, 1)
    cell = solid_liquid_cell(solid, repeat_along_z=2, seed=3)
    assert cell.get_chemical_formula() == (solid * (1, 1, 2)).get_chemical_formula()
    assert cell.arrays['initial_liquid'].sum() == len(solid)
    fraction = solid_fraction([solid, cell], 'Ca')
    assert fraction[0] == pytest.approx(1.0)
    assert 0.3 < fraction[1] < 0.8  # the crystal half stays solid, the disordered half does not
    with pytest.raises(ValueError, match='repeat_along_z'):
        solid_liquid_cell(solid, repeat_along_z=1)


def test_plots_write_png(tmp_path):
    from aiida_polyhydride.analysis.enthalpy_plots import plot_melting_curve, plot_reaction_enthalpy

    dft = {
        'pressure_GPa': [10.0, 20.0],
        'reactions': {
            'MH4': {'delta_H': [0.1, -0.1], 'sign_changes': sign_changes([10.0, 20.0], [0.1, -0.1])},
            'MH6': {'delta_H': [0.5, None], 'sign_changes': []},
        },
    }
    md = {'points': [{'temperature_K': 1500.0, 'pressure_GPa': 20.0,
                      'reactions_MH4': {'solid': {'delta_H': -0.2}, 'liquid': {'delta_H': -0.1}}}]}  # fmt: skip
    plot_reaction_enthalpy(dft, md, tmp_path / 'dh.png')
    melting = {
        'points': [
            {
                'pressure_GPa': 20.0,
                'bracket': bracket_melting_temperature([1000.0, 2000.0], ['solid', 'liquid']),
                'hysteresis': hysteresis_melting_temperature(2200.0, 1200.0),
            }
        ]
    }
    plot_melting_curve(melting, tmp_path / 'tm.png')
    for name in ('dh.png', 'tm.png'):
        assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
