"""Label the MH2/MH4/MH6 prototypes of a metal (and rattled copies) with pw.x into one TrainingSetData.

verdi -p polyhydride run workflows/label_prototypes.py -- --metal Ca --protocol fast
"""

import argparse

from aiida import orm
from aiida.engine import submit

from aiida_polyhydride.setup.pseudos import DEFAULT_FAMILY
from aiida_polyhydride.structures import PROTOTYPES, bulk_phase, primitive_cell, rattle
from aiida_polyhydride.workflows.label import LabelWorkChain

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--metal', default='Ca')
parser.add_argument('--code', default='pw@localhost')
parser.add_argument('--pseudo-family', default=DEFAULT_FAMILY)
parser.add_argument('--protocol', default='moderate', choices=sorted(LabelWorkChain.get_available_protocols()))
parser.add_argument('--rattled', type=int, default=1, help='rattled copies (0.05 A) per prototype')
arguments = parser.parse_args()

frames = []
for name in PROTOTYPES:
    prototype = primitive_cell(bulk_phase(name, arguments.metal))
    frames += [prototype] + [rattle(prototype, stdev=0.05, seed=seed) for seed in range(arguments.rattled)]

builder = LabelWorkChain.get_builder_from_protocol(
    orm.load_code(arguments.code),
    [orm.StructureData(ase=frame) for frame in frames],
    pseudo_family=arguments.pseudo_family,
    protocol=arguments.protocol,
)
builder.origin = orm.Dict({'origin_builder': f'{arguments.metal} prototypes'})
node = submit(builder)
print(f'submitted LabelWorkChain<{node.pk}> labelling {len(frames)} frames; follow: verdi process status {node.pk}')
