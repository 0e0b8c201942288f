"""Submit a pw.x single point (forces and stress) of each MH2/MH4/MH6 prototype of a metal.

verdi -p polyhydride run workflows/label_prototypes.py -- --metal Ca --stringency low
"""

import argparse

from aiida import orm
from aiida.engine import submit

from aiida_polyhydride.setup.pseudos import DEFAULT_FAMILY
from aiida_polyhydride.structures import PROTOTYPES, bulk_phase, primitive_cell
from aiida_polyhydride.workflows.pw import get_singlepoint_builder

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--metal', default='Ca')
parser.add_argument('--code', default='pw@localhost')
parser.add_argument('--pseudo-family', default=DEFAULT_FAMILY)
parser.add_argument('--stringency', default='normal', choices=['low', 'normal', 'high'])
arguments = parser.parse_args()

code = orm.load_code(arguments.code)
for name in PROTOTYPES:
    structure = orm.StructureData(ase=primitive_cell(bulk_phase(name, arguments.metal)))
    builder = get_singlepoint_builder(
        code, structure, pseudo_family=arguments.pseudo_family, stringency=arguments.stringency
    )
    builder.metadata.label = f'{arguments.metal} {name}'
    node = submit(builder)
    print(f'{name:<12} {structure.get_formula():<8} submitted PwBaseWorkChain<{node.pk}>')
