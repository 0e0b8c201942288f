"""IsolatedAtomsWorkChain: energies of isolated atoms in their ground spin state, the per-type energy shifts.

Each atom is labelled by a LabelWorkChain with the same protocol (and so the same cutoffs and smearing) as the
training data, alone in a box whose three edges differ so that no spurious symmetry constrains the density, at
Gamma only (the protocol's k spacing, meant for the training cells, is replaced: an atom has no dispersion). The
total magnetisation is fixed to the atom's ground-state moment (Hund's rule, ``ase.data``) with fixed
occupations: a free moment with smearing converged slowly (H: over 100 SCF steps), and a fixed moment with smearing
fails when one spin channel is empty (pw.x: "cannot bracket Ef"); a fixed moment is mixed more gently than the
training cells, and the SCF threshold is no tighter than a lone atom's noisy residual allows (see the constants).
Atoms with a degenerate open shell (e.g. La 5d1) may need smearing back through ``overrides``.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge
from ase.data import atomic_numbers, ground_state_magnetic_moments

from ..data.training_set import TrainingSetData
from ..protocols import protocol_file
from ..setup.pseudos import DEFAULT_FAMILY
from .label import LabelWorkChain

__all__ = ('IsolatedAtomsWorkChain', 'isolated_atom_boxes', 'isolated_atom_energies')

BOX_ASPECT = (1.0, 1.05, 1.1)
GAMMA_ONLY_KPOINTS_DISTANCE = 10.0  # 1/Angstrom: above 2 pi / edge for any box of edge > 0.63 A, so a 1x1x1 mesh
# SCF of one atom in a box (pw.x 6.7 here, H PAW, 'fast' 6 A box): the residual stays noisy between 1e-9 and 1e-6 Ry
# (PBE in the near-empty vacuum), so the protocols' per-atom conv_thr (4e-10 Ry for one atom) is never reached (100
# steps, then a restart), and 1e-9 Ry (1e-8 eV, far below what an energy shift needs) is the floor used here.
# With a fixed moment, mixing_beta 0.4 stalls even at 1e-8 Ry, 0.2 converges in 13-17 steps (1-2 MPI ranks; 7 in
# the 10 A box, against 38 at 0.4); closed-shell Ca keeps the protocol's 0.4 (9 steps, 14 at 0.2).
ISOLATED_ATOM_CONV_THR = 1e-9  # Ry, the tightest threshold used
FIXED_MOMENT_MIXING_BETA = 0.2  # the largest mixing used for a fixed moment


@calcfunction
def isolated_atom_boxes(elements: orm.List, box_length: orm.Float) -> dict[str, orm.StructureData]:
    """One atom of each element at the centre of an orthorhombic box of edges ``box_length`` x (1, 1.05, 1.1)."""
    boxes = {}
    for element in elements.get_list():
        cell = [[box_length.value * aspect if i == j else 0.0 for j in range(3)] for i, aspect in enumerate(BOX_ASPECT)]
        structure = orm.StructureData(cell=cell)
        structure.append_atom(position=[row[i] / 2 for i, row in enumerate(cell)], symbols=element)
        boxes[element] = structure
    return boxes


@calcfunction
def isolated_atom_energies(**datasets: TrainingSetData) -> orm.Dict:
    """{element: energy in eV} from datasets of single-atom frames."""
    energies = {}
    for frame in (frame for dataset in datasets.values() for frame in dataset.to_ase()):
        if len(frame) != 1:
            raise ValueError(f'isolated_atom_energies: a frame has {len(frame)} atoms, expected 1')
        energies[frame.get_chemical_symbols()[0]] = frame.get_potential_energy()
    return orm.Dict(energies)


def _validate_elements(value: orm.List, _) -> str | None:
    from ase.data import chemical_symbols

    unknown = [element for element in value.get_list() if element not in chemical_symbols[1:]]
    if unknown or not value.get_list():
        return f'give chemical symbols; not elements: {unknown}' if unknown else 'give at least one element'
    return None


class IsolatedAtomsWorkChain(ProtocolMixin, WorkChain):
    """Spin-polarised energies of isolated atoms with the labelling protocol."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures', 'frames'))
        spec.input('elements', valid_type=orm.List, validator=_validate_elements, help='Chemical symbols.')
        spec.input('box_length', valid_type=orm.Float, help='Edge of the (slightly orthorhombic) box, Angstrom.')
        spec.outline(cls.run_label, cls.results)
        spec.output('energies', valid_type=orm.Dict, help='{element: energy (eV)} of the isolated atoms.')
        spec.exit_code(401, 'ERROR_LABEL_FAILED', message='Labelling an isolated atom failed: {message}')

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('label')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        elements: list[str],
        pseudo_family: str = DEFAULT_FAMILY,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        cutoff_elements: list[str] | None = None,
    ):
        """Builder for ``elements``; ``cutoff_elements`` (default: ``elements``) fixes the cutoffs as in training.

        Use the elements of the training set as ``cutoff_elements`` so that the shifts match its cutoffs.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        cutoff_structures = [_single_atom(element) for element in (cutoff_elements or elements)]
        label = LabelWorkChain.get_builder_from_protocol(
            code,
            cutoff_structures,
            pseudo_family=pseudo_family,
            protocol=protocol,
            overrides=recursive_merge(overrides or {}, {'max_failed_fraction': 0.0}),
        )
        builder = cls.get_builder()
        # an atom's SCF threshold is ISOLATED_ATOM_CONV_THR (run_label), not the per-atom scaling of the protocol
        builder.label = {
            key: value for key, value in label.items() if key not in ('structures', 'frames', 'conv_thr_per_atom')
        }
        builder.elements = orm.List(list(elements))
        builder.box_length = orm.Float(inputs['isolated_atom']['box_length'])
        # an isolated atom has no dispersion to sample: Gamma only (the training set's k spacing gave a 3x2x2 mesh)
        builder.label.kpoints_distance = orm.Float(GAMMA_ONLY_KPOINTS_DISTANCE)
        return builder

    def run_label(self):
        """One LabelWorkChain per element, each with the atom's ground-state total magnetisation."""
        boxes = isolated_atom_boxes(self.inputs.elements, self.inputs.box_length)
        running = {}
        for element, box in boxes.items():
            inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
            inputs.pop('conv_thr_per_atom', None)  # the atom's own threshold is set below
            inputs.pw_base = AttributeDict(inputs.pw_base)
            inputs.pw_base.pw = AttributeDict(inputs.pw_base.pw)
            parameters = inputs.pw_base.pw.parameters.get_dict()
            for smearing_key in ('smearing', 'degauss'):
                parameters['SYSTEM'].pop(smearing_key, None)
            spin = spin_parameters(element)
            parameters['SYSTEM'].update(spin)
            electrons = parameters.setdefault('ELECTRONS', {})
            electrons['conv_thr'] = max(electrons.get('conv_thr', 1e-6), ISOLATED_ATOM_CONV_THR)  # pw.x default 1e-6
            if spin['nspin'] == 2:
                electrons['mixing_beta'] = min(electrons.get('mixing_beta', 0.7), FIXED_MOMENT_MIXING_BETA)  # pw.x: 0.7
            inputs.pw_base.pw.parameters = orm.Dict(parameters)
            inputs.structures = {element: box}
            inputs.metadata = {'call_link_label': f'label_{element}'}
            running[f'label_{element}'] = self.submit(LabelWorkChain, **inputs)
        return ToContext(**running)

    def results(self):
        nodes = {key[len('label_') :]: self.ctx[key] for key in self.ctx if key.startswith('label_')}
        failed = {element: node for element, node in nodes.items() if not node.is_finished_ok}
        if failed:
            message = '; '.join(f'{element}: {node.exit_message or "excepted"}' for element, node in failed.items())
            return self.exit_codes.ERROR_LABEL_FAILED.format(message=message)
        self.out(
            'energies', isolated_atom_energies(**{element: node.outputs.dataset for element, node in nodes.items()})
        )
        return None


def spin_parameters(element: str) -> dict[str, Any]:
    """pw.x SYSTEM entries fixing the ground-state moment of an isolated ``element`` atom (spin-restricted if 0)."""
    moment = float(ground_state_magnetic_moments[atomic_numbers[element]])
    spin = {'nspin': 2, 'tot_magnetization': moment} if moment > 0 else {'nspin': 1}
    return {'occupations': 'fixed', **spin}


def _single_atom(element: str) -> orm.StructureData:
    structure = orm.StructureData(cell=[[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    structure.append_atom(position=[5.0, 5.0, 5.0], symbols=element)
    return structure
