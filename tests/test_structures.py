"""Tests of aiida_polyhydride.structures (pure ASE/numpy/spglib, no AiiDA)."""

import warnings

import numpy as np
import pytest
import spglib
from ase import Atoms
from ase.geometry import get_distances

from aiida_polyhydride.structures import (
    PROTOTYPES,
    bulk_phase,
    dense_h2_fluid,
    liquid_like,
    mh2_ni2in,
    mh4_i4mmm,
    off_stoichiometric,
    rattle,
    slab_h2_interface,
    strain,
)

AMU_G = 1.66053906660e-24  # g per atomic mass unit

EXPECTED = {'MH2-Pnma': (62, 2), 'MH2-P63mmc': (194, 2), 'MH4-I4mmm': (139, 4), 'MH6-Im-3m': (229, 6)}


def spacegroup_number(atoms, symprec=1e-3):
    with warnings.catch_warnings():  # spglib 2.x deprecation notice about its error handling
        warnings.simplefilter('ignore', DeprecationWarning)
        dataset = spglib.get_symmetry_dataset(
            (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=symprec
        )
    return dataset.number


def h_per_metal(atoms, metal):
    symbols = atoms.get_chemical_symbols()
    return symbols.count('H') / symbols.count(metal)


def min_distance_between(points, others, cell):
    _, d = get_distances(points, others, cell=cell, pbc=True)
    return d.min()


def mic_distance_matrix(atoms):
    _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    return d


def density_g_cm3(atoms, volume):
    return atoms.get_masses().sum() * AMU_G / (volume * 1e-24)


# ---------------------------------------------------------------- phases


@pytest.mark.parametrize('metal', ['Ca', 'Sr', 'La'])
@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_prototype_space_group_and_composition(name, metal):
    atoms = bulk_phase(name, metal=metal)
    number, x = EXPECTED[name]
    assert spacegroup_number(atoms) == number
    assert set(atoms.get_chemical_symbols()) == {metal, 'H'}
    assert h_per_metal(atoms, metal) == x
    assert atoms.pbc.all()
    assert atoms.info['prototype'] == name


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_prototype_volume_per_atom_and_metal_scaling(name):
    fixed = PROTOTYPES[name]('Ca', volume_per_atom=7.5)
    assert fixed.get_volume() / len(fixed) == pytest.approx(7.5, rel=1e-10)
    assert spacegroup_number(fixed) == EXPECTED[name][0]
    ca, la = PROTOTYPES[name]('Ca'), PROTOTYPES[name]('La')
    ratio = (2.07 / 1.76) ** 3  # ASE covalent radii of La and Ca
    assert la.get_volume() / ca.get_volume() == pytest.approx(ratio, rel=1e-6)


def test_prototype_distances_are_physical():
    for name in EXPECTED:
        d = mic_distance_matrix(bulk_phase(name))
        assert d[np.triu_indices(len(d), 1)].min() > 0.7


@pytest.mark.parametrize('metal', ['Ca', 'La'])
def test_mh4_has_h2_units_of_0p8_angstrom(metal):
    atoms = mh4_i4mmm(metal, volume_per_atom=None if metal == 'Ca' else 6.0)
    d = mic_distance_matrix(atoms)
    h = np.array(atoms.get_chemical_symbols()) == 'H'
    dhh = d[np.ix_(h, h)] + np.eye(h.sum()) * 99
    nearest = dhh.min(axis=1)
    assert np.sort(nearest)[:4] == pytest.approx([0.8] * 4, abs=1e-6)  # the four 4e atoms pair up
    assert np.sort(nearest)[4] > 1.2


def test_cotunnite_default_lattice():
    atoms = bulk_phase('MH2-Pnma')
    assert atoms.cell.cellpar()[:3] == pytest.approx([5.936, 3.600, 6.838])
    assert len(atoms) == 12


# ---------------------------------------------------------------- fluid


@pytest.mark.parametrize(('n', 'rho'), [(64, 0.35), (100, 0.45)])
def test_dense_h2_fluid(n, rho):
    atoms = dense_h2_fluid(n, rho, seed=3)
    assert len(atoms) == 2 * n
    assert set(atoms.get_chemical_symbols()) == {'H'}
    assert density_g_cm3(atoms, atoms.get_volume()) == pytest.approx(rho, abs=1e-6)
    assert np.allclose(atoms.cell[:], np.diag(np.diag(atoms.cell[:])))
    assert np.ptp(atoms.cell.lengths()) < 1e-9
    d = mic_distance_matrix(atoms)
    mol = atoms.arrays['molecule_id']
    same = mol[:, None] == mol[None, :]
    np.fill_diagonal(same, False)
    assert d[same] == pytest.approx(0.74, abs=1e-9)
    different = mol[:, None] != mol[None, :]
    assert d[different].min() >= 1.2 - 1e-9


def test_dense_h2_fluid_cell_shape_and_bond():
    atoms = dense_h2_fluid(40, 0.3, bond_length=0.8, min_intermolecular=1.3, cell_shape=(1, 1, 2), seed=1)
    a, b, c = atoms.cell.lengths()
    assert c / a == pytest.approx(2) and a == pytest.approx(b)
    d = mic_distance_matrix(atoms)
    assert d[0, 1] == pytest.approx(0.8)
    mol = atoms.arrays['molecule_id']
    assert d[mol[:, None] != mol[None, :]].min() >= 1.3 - 1e-9


def test_dense_h2_fluid_reproducible():
    a, b, c = (dense_h2_fluid(32, 0.35, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)


def test_dense_h2_fluid_bad_arguments():
    with pytest.raises(ValueError, match='density_g_cm3'):
        dense_h2_fluid(32, -0.3)
    with pytest.raises(ValueError, match=r'density_g_cm3=5.*impossible.*min_intermolecular=1.2'):
        dense_h2_fluid(32, 5.0, min_intermolecular=1.2)
    with pytest.raises(ValueError, match='n_molecules'):
        dense_h2_fluid(0, 0.35)
    with pytest.raises(ValueError, match='cell_shape'):
        dense_h2_fluid(8, 0.35, cell_shape='hexagonal')
    with pytest.raises(ValueError, match='seed'):
        dense_h2_fluid(8, 0.35, seed=-1)


# ---------------------------------------------------------------- interface


@pytest.mark.parametrize(
    'kwargs',
    [
        {},
        {'phase': 'MH2-P63mmc', 'miller': (1, 0, 0), 'repeats': (2, 2)},
        {'phase': 'MH4-I4mmm', 'metal': 'La', 'miller': (1, 1, 0), 'layers': 3, 'n_molecules': 20},
        {'phase': 'MH2-P63mmc', 'miller': (1, 1, 1), 'repeats': (2, 1), 'reservoir_thickness': 12.0},
    ],
)
def test_slab_h2_interface(kwargs):
    atoms = slab_h2_interface(**kwargs, seed=2)
    metal = kwargs.get('metal', 'Ca')
    region = atoms.arrays['region']
    slab, fluid = atoms[region == 0], atoms[region == 1]
    phase = kwargs.get('phase', 'MH2-Pnma')
    assert h_per_metal(slab, metal) == EXPECTED[phase][1]
    assert set(fluid.get_chemical_symbols()) == {'H'}
    assert len(fluid) == 2 * atoms.info['n_molecules']
    if 'n_molecules' in kwargs:
        assert atoms.info['n_molecules'] == kwargs['n_molecules']
    assert atoms.pbc.all()
    assert atoms.info['phase'] == phase and atoms.info['layers'] == kwargs.get('layers', 2)
    assert tuple(atoms.info['miller']) == kwargs.get('miller', (0, 0, 1))
    # third cell vector along the normal, slab + reservoir fill it
    assert np.allclose(atoms.cell[2, :2], 0) and np.allclose(atoms.cell[:2, 2], 0)
    assert atoms.cell[2, 2] == pytest.approx(atoms.info['slab_thickness'] + atoms.info['reservoir_thickness'])
    # gap between slab and fluid, by minimum image
    assert min_distance_between(fluid.positions, slab.positions, atoms.cell) >= 1.5 - 1e-9
    # reservoir density: requested (exact unless the thickness is imposed)
    area = np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1]))
    rho = density_g_cm3(fluid, area * atoms.info['reservoir_thickness'])
    assert rho == pytest.approx(0.35, rel=0.05 if 'reservoir_thickness' in kwargs else 1e-9)
    mol = fluid.arrays['molecule_id']
    d = mic_distance_matrix(fluid)
    assert d[mol[:, None] != mol[None, :]].min() >= 1.2 - 1e-9


def test_slab_h2_interface_reproducible_and_slab_is_bulk_composition():
    a, b, c = (slab_h2_interface(repeats=(2, 1), seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)
    assert (a.arrays['region'] == 0).sum() == 12 * 2 * 2  # 2 layers of the 12-atom cell, doubled in plane


@pytest.mark.parametrize(
    ('kwargs', 'name'),
    [
        ({'metal': 'Xx'}, 'metal'),
        ({'metal': 'H'}, 'metal'),
        ({'layers': 0}, 'layers'),
        ({'repeats': (0, 1)}, 'repeats'),
        ({'miller': (0, 0, 0)}, 'miller'),
        ({'phase': 'MH3-Fm-3m'}, 'phase'),
        ({'density_g_cm3': -1.0}, 'density_g_cm3'),
        ({'density_g_cm3': 5.0}, 'density_g_cm3'),
        ({'n_molecules': 10, 'reservoir_thickness': 10.0}, 'reservoir_thickness'),
        ({'gap': -0.5}, 'gap'),
        ({'volume_per_atom': 0}, 'volume_per_atom'),
    ],
)
def test_slab_h2_interface_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        slab_h2_interface(**kwargs)


# ---------------------------------------------------------------- samplers


def test_rattle():
    atoms = mh2_ni2in() * (3, 3, 3)
    before = atoms.positions.copy()
    new = rattle(atoms, stdev=0.05, seed=1)
    assert np.array_equal(atoms.positions, before)
    displacement = new.positions - before
    assert displacement.std() == pytest.approx(0.05, rel=0.15)
    assert abs(displacement.mean()) < 0.02
    assert np.array_equal(rattle(atoms, seed=1).positions, new.positions)
    assert not np.allclose(rattle(atoms, seed=2).positions, new.positions)


def test_strain():
    atoms = bulk_phase('MH4-I4mmm') * (2, 2, 1)
    cell_before = atoms.cell[:].copy()
    new = strain(atoms, max_strain=0.05, seed=4)
    assert np.array_equal(atoms.cell[:], cell_before)
    assert np.allclose(new.get_scaled_positions(), atoms.get_scaled_positions())
    eps = np.array(new.info['strain']).reshape(3, 3)
    assert np.allclose(eps, eps.T) and np.abs(eps).max() <= 0.05 and np.abs(eps).max() > 0
    assert np.allclose(new.cell[:], cell_before @ (np.eye(3) + eps))
    assert np.array_equal(strain(atoms, seed=4).cell[:], new.cell[:])
    assert not np.allclose(strain(atoms, seed=5).cell[:], new.cell[:])


@pytest.mark.parametrize('x', [2, 2.5, 3.25, 4, 5, 6])
def test_off_stoichiometric(x):
    atoms = bulk_phase('MH4-I4mmm') * (2, 2, 1)  # 8 Ca, 32 H
    n_before = len(atoms)
    new = off_stoichiometric(atoms, x, seed=3, min_distance=0.7)
    assert len(atoms) == n_before
    assert h_per_metal(new, 'Ca') == x
    if x > 4:
        added = new.positions[n_before:]
        assert min_distance_between(added, new.positions[:n_before], new.cell) >= 0.7
        d = mic_distance_matrix(new[n_before:])
        assert d[np.triu_indices(len(d), 1)].min() >= 0.7
    assert np.array_equal(off_stoichiometric(atoms, x, seed=3).positions, new.positions)


def test_off_stoichiometric_different_seeds_differ():
    atoms = bulk_phase('MH2-P63mmc') * (2, 2, 2)
    a, b = off_stoichiometric(atoms, 3, seed=0), off_stoichiometric(atoms, 3, seed=1)
    assert not np.allclose(a.positions, b.positions)


def test_liquid_like():
    for metal in ('Ca', 'La'):
        for x in (2.0, 4.0, 6.0):
            atoms = liquid_like(metal, x=x, n_metal=6, seed=5)
            assert h_per_metal(atoms, metal) == x
            assert spacegroup_number(atoms, symprec=1e-3) == 1
            d = mic_distance_matrix(atoms)
            m = np.array(atoms.get_chemical_symbols()) == metal
            np.fill_diagonal(d, np.inf)
            scale = {'Ca': 1.0, 'La': 2.07 / 1.76}[metal]
            assert d[np.ix_(m, m)].min() >= 2.4 * scale - 1e-9
            assert d[np.ix_(m, ~m)].min() >= 1.5 * scale - 1e-9
            assert d[np.ix_(~m, ~m)].min() >= 0.7 - 1e-9
    atoms = liquid_like('Ca', 4.0, n_metal=4, volume_per_atom=6.0, seed=1)
    assert atoms.get_volume() / len(atoms) == pytest.approx(6.0)
    assert np.array_equal(liquid_like(seed=1).positions, liquid_like(seed=1).positions)
    assert not np.allclose(liquid_like(seed=1).positions, liquid_like(seed=2).positions)


def test_sampler_bad_arguments():
    atoms = bulk_phase('MH2-P63mmc')
    with pytest.raises(ValueError, match='x must be'):
        off_stoichiometric(atoms, 7)
    with pytest.raises(ValueError, match=r'x=2\.75'):
        off_stoichiometric(atoms, 2.75)  # 2.75 * 2 metal atoms is not whole
    with pytest.raises(ValueError, match='metal'):
        off_stoichiometric(atoms, 3, metal='Xx')
    with pytest.raises(ValueError, match='metal'):
        off_stoichiometric(Atoms('CaSrH4', cell=[4, 4, 4], pbc=True, positions=np.eye(6, 3) * 2), 2)
    with pytest.raises(ValueError, match=r'x=6 is impossible'):
        off_stoichiometric(atoms, 6, min_distance=2.0)
    with pytest.raises(ValueError, match='stdev'):
        rattle(atoms, stdev=-0.1)
    with pytest.raises(ValueError, match='max_strain'):
        strain(atoms, max_strain=0.7)
    with pytest.raises(ValueError, match='atoms'):
        rattle('CaH2')
    with pytest.raises(ValueError, match='x must be'):
        liquid_like(x=7)
    with pytest.raises(ValueError, match='metal'):
        liquid_like(metal='H')
    with pytest.raises(ValueError, match='n_metal'):
        liquid_like(n_metal=0)
    with pytest.raises(ValueError, match='volume_per_atom'):
        liquid_like(volume_per_atom=1.0)
    with pytest.raises(ValueError, match='min_distance'):
        liquid_like(min_distance={'Ca-Ca': 2.0})


@pytest.mark.parametrize('metal', ['Xx', 'H', 'ca', '', 20])
def test_bad_metal_everywhere(metal):
    for build in (*PROTOTYPES.values(), liquid_like):
        with pytest.raises(ValueError, match='metal'):
            build(metal=metal)


def test_bulk_phase_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"name: 'CaH4'.*'MH2-Pnma'.*'MH6-Im-3m'"):
        bulk_phase('CaH4')


@pytest.mark.parametrize(('name', 'n_primitive'), [('MH4-I4mmm', 5), ('MH6-Im-3m', 7), ('MH2-Pnma', 12)])
def test_primitive_cell_keeps_composition_and_volume_per_atom(name, n_primitive):
    from aiida_polyhydride.structures import bulk_phase, primitive_cell

    conventional = bulk_phase(name, 'Ca')
    primitive = primitive_cell(conventional)
    assert len(primitive) == n_primitive
    ratio = len(conventional) // n_primitive
    assert primitive.get_volume() * ratio == pytest.approx(conventional.get_volume(), rel=1e-6)
    assert sorted(primitive.get_chemical_symbols() * ratio) == sorted(conventional.get_chemical_symbols())
