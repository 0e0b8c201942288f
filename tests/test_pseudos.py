"""Pseudopotential generation with the real ld1.x and installation with aiida-pseudo."""

from __future__ import annotations

import re

import pytest

from aiida_polyhydride.pseudos import (
    MAX_UPF_LINE_LENGTH,
    PseudoGenerationError,
    generate_pseudopotential,
    generate_pseudopotentials,
    wrap_upf_lines,
)

NUMERIC = re.compile(r'^[\s0-9eEdD+\-.]+$')


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp('pseudos')
    return {path.name.split('.')[0]: path for path in generate_pseudopotentials(directory)}


def test_generated_files_are_readable_paw_upf(generated):
    from aiida_pseudo.data.pseudo import UpfData

    expected_valence = {'Ca': 10.0, 'H': 1.0}  # Ca: 3s2 3p6 4s2 semicore valence
    for element, path in generated.items():
        with path.open('rb') as handle:
            upf = UpfData(handle, filename=path.name)
        assert upf.element == element
        assert upf.z_valence == pytest.approx(expected_valence[element])
        header = path.read_text()[:4000]
        assert 'PAW' in header


def test_generated_files_have_no_overlong_numeric_lines(generated):
    for path in generated.values():
        for line in path.read_text().splitlines():
            assert not (len(line) > MAX_UPF_LINE_LENGTH and NUMERIC.match(line)), path


def test_wrapping_keeps_every_number_in_order():
    long_line = ' '.join(f'{value:.8E}' for value in range(50))
    text = f'<PP_R>\n{long_line}\n</PP_R>\n'
    wrapped = wrap_upf_lines(text)
    assert wrapped.split() == text.split()
    assert max(len(line) for line in wrapped.splitlines()) <= MAX_UPF_LINE_LENGTH
    assert wrap_upf_lines(wrapped) == wrapped  # idempotent


def test_missing_ld1x_is_reported_clearly(tmp_path):
    with pytest.raises(PseudoGenerationError, match=r'ld1\.x executable .* not found'):
        generate_pseudopotential('Ca', tmp_path, ld1_executable='no-such-ld1.x')


def test_unknown_element_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"element: no ld1\.x input is shipped for 'Xx'"):
        generate_pseudopotential('Xx', tmp_path)


def test_family_is_installed_with_recommended_cutoffs(localhost_setup):
    from aiida import orm

    from aiida_polyhydride.pseudos import RECOMMENDED_CUTOFFS_RY
    from aiida_polyhydride.setup.pseudos import DEFAULT_FAMILY, setup_pseudo_family

    family = orm.Group.collection.get(label=DEFAULT_FAMILY)
    assert set(family.elements) == {'Ca', 'H'}
    structure = orm.StructureData(cell=[[3, 0, 0], [0, 3, 0], [0, 0, 3]])
    structure.append_atom(position=(0, 0, 0), symbols='Ca')
    structure.append_atom(position=(1.5, 1.5, 1.5), symbols='H')
    for stringency, cutoffs in RECOMMENDED_CUTOFFS_RY.items():
        assert family.get_recommended_cutoffs(structure=structure, stringency=stringency, unit='Ry') == cutoffs
    assert family.get_default_stringency() == 'normal'
    # a second set-up finds the family and changes nothing
    assert not setup_pseudo_family().changed
    assert len(family.nodes) == 2
