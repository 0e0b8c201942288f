"""The synthetic species-pair Morse reference: forces and stress are the derivatives of its energy."""

import numpy as np
import pytest
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from aiida_polyhydride.analysis.synthetic import CaHMorseReference, label_with
from aiida_polyhydride.structures import bulk_phase, liquid_like, rattle, strain


@pytest.mark.parametrize(
    'atoms',
    [
        strain(rattle(liquid_like(x=4.0, n_metal=2, seed=3), 0.05, seed=1), 0.05, seed=2),
        rattle(bulk_phase('MH4-I4mmm'), 0.1, seed=0),
    ],
    ids=['liquid_like', 'MH4'],
)
def test_forces_and_stress_are_energy_derivatives(atoms):
    atoms.calc = CaHMorseReference()
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert np.abs(forces).max() > 0.1  # a distorted cell: the check below is not trivially passed by zeros
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-5), atol=1e-6)
    np.testing.assert_allclose(stress, calculate_numerical_stress(atoms, eps=1e-6), atol=1e-6)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)


def test_species_pairs_differ_and_labels_are_copies():
    h2 = bulk_phase('MH4-I4mmm')  # H2-like units at 0.80 Angstrom, near the H-H minimum (0.75), far from Ca-H's
    (labelled,) = label_with(CaHMorseReference(), [h2])
    assert h2.calc is None
    assert np.isfinite(labelled.get_potential_energy())
    assert np.abs(labelled.get_forces()).max() < 5.0  # a species-blind Morse at r0 = 1.8 gives ~50 eV/Angstrom here
