"""TrainingSetData and merge_datasets: round trip, validation naming the frame, deduplication with provenance."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_polyhydride.analysis.frames import frame_hash, label_frame, qe_stress_to_ase


def make_frame(shift: float = 0.0, energy: float = -10.0, with_stress: bool = True, n: int = 2) -> Atoms:
    atoms = Atoms('CaH' if n == 2 else 'CaH' + 'H' * (n - 2), cell=np.eye(3) * 3.0, pbc=True)
    atoms.positions = np.random.default_rng(7).uniform(0, 3, (n, 3)) + shift
    forces = np.arange(3 * n, dtype=float).reshape(n, 3) - 1.5 * n
    stress = np.diag([-0.1, -0.2, -0.3]) if with_stress else None
    return label_frame(atoms, energy, forces, stress, info={'label_uuid': 'u' * 8, 'origin_builder': 'test'})


def test_round_trip_keeps_labels_info_and_attributes():
    from aiida_polyhydride.data import TrainingSetData

    frames = [make_frame(0.0, -10.0), make_frame(0.3, -11.0, n=3)]
    node = TrainingSetData.from_ase(frames).store()
    assert len(node) == 2
    assert node.species == ['Ca', 'H']
    assert node.n_atoms_total == 5
    assert node.properties == ['energy', 'forces', 'stress']
    assert node.base.attributes.get('units')['stress'].startswith('eV/Angstrom^3')
    loaded = node.to_ase()
    for original, copy in zip(frames, loaded, strict=True):
        assert copy.get_potential_energy() == pytest.approx(original.get_potential_energy())
        assert np.allclose(copy.get_forces(), original.get_forces())
        assert np.allclose(copy.get_stress(voigt=False), original.get_stress(voigt=False))
        assert np.allclose(copy.positions, original.positions)
        assert copy.info['label_uuid'] == 'u' * 8
    with pytest.raises(Exception, match='immutable'):
        node.base.attributes.set('n_frames', 3)


@pytest.mark.parametrize(
    ('bad_frame', 'message'),
    [
        (Atoms('CaH', cell=np.eye(3) * 3, pbc=True), 'frame 1: has no energy'),
        (make_frame(energy=float('nan')), 'frame 1: energy contains NaN'),
        (make_frame(with_stress=False), 'frame 1: carries energy, forces but frame 0 carries energy, forces, stress'),
    ],
)
def test_malformed_frames_are_refused_naming_the_frame(bad_frame, message):
    from aiida_polyhydride.data import TrainingSetData

    with pytest.raises(ValueError, match=message):
        TrainingSetData.from_ase([make_frame(), bad_frame])


def test_nan_forces_and_wrong_shapes_are_refused():
    from aiida_polyhydride.data import TrainingSetData

    nan_forces = make_frame()
    nan_forces.calc.results['forces'][1, 2] = np.nan
    with pytest.raises(ValueError, match='frame 0: forces contains NaN'):
        TrainingSetData.from_ase([nan_forces])
    wrong_shape = make_frame()
    wrong_shape.calc.results['forces'] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r'frame 0: forces has shape \(3, 3\), expected \(2, 3\)'):
        TrainingSetData.from_ase([wrong_shape])


def test_unlabelled_dataset_for_labelling_input():
    from aiida_polyhydride.data import TrainingSetData

    node = TrainingSetData.from_ase([Atoms('CaH2', cell=np.eye(3) * 4, pbc=True)], labelled=False)
    assert node.properties == []
    assert not node.is_labelled


def test_tampered_file_is_detected():
    from aiida_polyhydride.data import TrainingSetData

    node = TrainingSetData.from_ase([make_frame()])
    node.base.repository.put_object_from_bytes(b'garbage', TrainingSetData.FILENAME)
    with pytest.raises(ValueError, match='does not match its recorded sha256'):
        node.to_ase()


def test_merge_deduplicates_and_records_provenance():
    from aiida_polyhydride.data import TrainingSetData, merge_datasets

    first = TrainingSetData.from_ase([make_frame(0.0), make_frame(0.5)]).store()
    second = TrainingSetData.from_ase([make_frame(0.5, energy=-99.0), make_frame(1.0)]).store()
    merged = merge_datasets(a=first, b=second)
    assert len(merged) == 3
    hashes = [frame_hash(frame) for frame in merged.to_ase()]
    assert len(set(hashes)) == 3
    # the first occurrence wins: the duplicate from `b` did not replace the frame from `a`
    assert merged.to_ase()[1].get_potential_energy() == pytest.approx(-10.0)
    creator = merged.creator
    assert creator.process_label == 'merge_datasets'
    assert {link.node.uuid for link in creator.base.links.get_incoming().all()} == {first.uuid, second.uuid}


def test_merge_refuses_mixed_properties():
    from aiida_polyhydride.data import TrainingSetData, merge_datasets

    with_stress = TrainingSetData.from_ase([make_frame(0.0)]).store()
    without = TrainingSetData.from_ase([make_frame(0.7, with_stress=False)]).store()
    with pytest.raises(ValueError, match='datasets carry different properties'):
        merge_datasets(a=with_stress, b=without)


def test_qe_stress_sign_and_units():
    # pw.x reports compression as positive pressure in GPa; ASE's stress of a compressed cell is negative
    stress = qe_stress_to_ase(np.eye(3) * 40.0)
    assert stress[0, 0] == pytest.approx(-40.0 / 160.21766208)
