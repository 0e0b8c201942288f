"""The pseudo-family check against experiment: the measures of a relaxed structure and their deviations."""

from __future__ import annotations

import pytest
from ase import Atoms
from ase.build import bulk

from aiida_polyhydride.analysis.reference_checks import (
    EXPERIMENT,
    deviations,
    fcc_lattice_constant,
    h2_bond_length,
    volume_per_formula_unit,
)
from aiida_polyhydride.structures import bulk_phase


def test_measures_of_known_structures():
    assert fcc_lattice_constant(bulk('Ca', 'fcc', a=5.5)) == pytest.approx(5.5)
    assert fcc_lattice_constant(bulk('Ca', 'fcc', a=5.5, cubic=True)) == pytest.approx(5.5)
    # across the periodic boundary: the minimum image, not the 9.3 Angstrom in the cell
    molecule = Atoms('H2', positions=[(0, 0, 0.1), (0, 0, 9.4)], cell=(10, 10, 10), pbc=True)
    assert h2_bond_length(molecule) == pytest.approx(0.7)
    measured_cell = bulk_phase('MH2-Pnma', 'Ca', volume_per_atom=EXPERIMENT['CaH2_Pnma_volume'][0] / 3)
    assert volume_per_formula_unit(measured_cell) == pytest.approx(EXPERIMENT['CaH2_Pnma_volume'][0])
    # the source's cell parameters give the stated volume: a = 5.9600, b = 3.6006, c = 6.8167, Z = 4
    source_volume = 5.9600 * 3.6006 * 6.8167 / 4
    assert EXPERIMENT['CaH2_Pnma_volume'][0] == pytest.approx(source_volume, abs=0.01)


def test_wrong_structures_are_refused():
    with pytest.raises(ValueError, match='expected one H2 molecule'):
        h2_bond_length(Atoms('H3', positions=[(0, 0, 0), (0, 0, 0.7), (0, 0, 1.4)], cell=(9, 9, 9), pbc=True))
    with pytest.raises(ValueError, match='is not MH2'):
        volume_per_formula_unit(bulk_phase('MH4-I4mmm', 'Ca'))


def test_deviation_sign_and_size():
    result = deviations({'H2_bond_length': 0.7514, 'fcc_Ca_lattice_constant': 5.5321})
    assert result['H2_bond_length']['deviation_percent'] == pytest.approx(100 * 0.01 / 0.7414)
    assert result['fcc_Ca_lattice_constant']['deviation_percent'] == pytest.approx(-1.0, abs=0.01)
    assert 'Huber' in result['H2_bond_length']['source']


def test_compare_with_experiment_is_a_calcfunction_node(aiida_profile):
    from aiida import orm

    from aiida_polyhydride.workflows.convergence import compare_with_experiment

    fcc = orm.StructureData(ase=bulk('Ca', 'fcc', a=EXPERIMENT['fcc_Ca_lattice_constant'][0]))
    result = compare_with_experiment(fcc_Ca=fcc)
    assert result.creator.process_label == 'compare_with_experiment'
    assert result['fcc_Ca_lattice_constant']['deviation_percent'] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match='unknown systems'):
        compare_with_experiment(bcc_Ca=fcc)
