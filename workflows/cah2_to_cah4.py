"""Surface-melting MD of CaH2 in dense H2 (the CaH2 + H2 -> CaH4 study), one condition or a (T, P) scan.

verdi -p polyhydride run workflows/cah2_to_cah4.py -- --committee PK --code python@localhost --protocol fast
verdi -p polyhydride run workflows/cah2_to_cah4.py -- --committee PK --temperatures 1073 1473 --pressures 20 40

PK: a finished ActiveLearningWorkChain (its committee runs the MD; uncertain production frames are relabelled and the
committee retrained, with the loop's DFT and training settings), or a CommitteeWorkChain (any node with
outputs.models.member_0 ...: monitoring only).
"""

import argparse

from aiida import orm
from aiida.engine import submit

from aiida_polyhydride.workflows.surface_melting import SurfaceMeltingScanWorkChain, SurfaceMeltingWorkChain

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--committee', type=int, required=True, help='pk of the node whose outputs.models is the committee')
parser.add_argument('--code', default='python@localhost', help='Python code that runs the MD runner')
parser.add_argument('--metal', default='Ca')
parser.add_argument('--phase', default='MH2-Pnma', help='slab phase: MH2-Pnma, MH2-P63mmc, MH4-I4mmm, MH6-Im-3m')
parser.add_argument('--protocol', default='moderate', choices=sorted(SurfaceMeltingWorkChain.get_available_protocols()))
parser.add_argument('--temperatures', type=float, nargs='+', default=[1473.0], help='K')
parser.add_argument('--pressures', type=float, nargs='+', default=[40.0], help='GPa')
parser.add_argument('--length', type=float, default=None, help='production length (ps); default: the protocol')
arguments = parser.parse_args()

source = orm.load_node(arguments.committee)
if source.process_label == 'ActiveLearningWorkChain':
    models, active_learning = None, source
else:
    models, active_learning = dict(source.outputs.models), None
common = {
    'active_learning': active_learning,
    'metal': arguments.metal,
    'length': arguments.length,
    'protocol': arguments.protocol,
    'overrides': {'slab': {'phase': arguments.phase}},
}
code = orm.load_code(arguments.code)
if len(arguments.temperatures) == 1 and len(arguments.pressures) == 1:
    builder = SurfaceMeltingWorkChain.get_builder_from_protocol(
        code, models, temperature=arguments.temperatures[0], pressure=arguments.pressures[0], **common
    )
else:
    builder = SurfaceMeltingScanWorkChain.get_builder_from_protocol(
        code, models, temperatures=arguments.temperatures, pressures=arguments.pressures, **common
    )
node = submit(builder)
print(f'submitted {node.process_label}<{node.pk}>; follow: verdi process status {node.pk}')
