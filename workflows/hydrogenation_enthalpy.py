"""Hydrogenation enthalpy of MH2 + H2 -> MH4 / MH6 versus pressure (pw.x vc-relax), optionally with MLIP MD.

verdi -p polyhydride run workflows/hydrogenation_enthalpy.py -- --metal Ca --pressures 0 20 40 60 --protocol fast
Add --committee PK (a CommitteeWorkChain) to run the MLIP branch (solid/liquid MH4 enthalpies, T_m of MH4).
"""

import argparse

from aiida import orm
from aiida.engine import submit

from aiida_polyhydride.setup.pseudos import DEFAULT_FAMILY
from aiida_polyhydride.workflows.enthalpy import HydrogenationEnthalpyWorkChain

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--metal', default='Ca')
parser.add_argument('--pressures', type=float, nargs='+', default=[0.0, 20.0, 40.0, 60.0], help='GPa')
parser.add_argument('--code', default='pw@localhost')
parser.add_argument('--pseudo-family', default=DEFAULT_FAMILY)
parser.add_argument(
    '--protocol', default='moderate', choices=sorted(HydrogenationEnthalpyWorkChain.get_available_protocols())
)
parser.add_argument('--committee', type=int, help='pk of a finished CommitteeWorkChain: switches the MLIP branch on')
parser.add_argument('--python-code', default='python@localhost', help='code of the MD runner (MLIP branch)')
arguments = parser.parse_args()

mlip = {}
if arguments.committee:
    mlip = {
        'mlip_code': orm.load_code(arguments.python_code),
        'models': dict(orm.load_node(arguments.committee).outputs.models),
    }
builder = HydrogenationEnthalpyWorkChain.get_builder_from_protocol(
    orm.load_code(arguments.code),
    arguments.metal,
    arguments.pressures,
    protocol=arguments.protocol,
    pseudo_family=arguments.pseudo_family,
    **mlip,
)
node = submit(builder)
print(f'submitted HydrogenationEnthalpyWorkChain<{node.pk}>: verdi process report {node.pk}')
print('outputs: dft_table, dft_enthalpies, enthalpy_plot (and md_table, melting_table, melting_plot)')
