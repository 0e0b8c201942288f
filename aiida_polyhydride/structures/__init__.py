"""Pure-ASE builders of the training domain: bulk prototypes, dense H2 fluid, slab/H2 interfaces, samplers.

No AiiDA import here: these functions run anywhere ASE does.
"""

from .fluid import dense_h2_fluid
from .interface import slab_h2_interface
from .phases import PROTOTYPES, bulk_phase, mh2_cotunnite, mh2_ni2in, mh4_i4mmm, mh6_clathrate, primitive_cell
from .sampling import default_volume_per_atom, liquid_like, off_stoichiometric, rattle, strain

__all__ = [
    'PROTOTYPES',
    'bulk_phase',
    'default_volume_per_atom',
    'dense_h2_fluid',
    'liquid_like',
    'mh2_cotunnite',
    'mh2_ni2in',
    'mh4_i4mmm',
    'mh6_clathrate',
    'off_stoichiometric',
    'primitive_cell',
    'rattle',
    'slab_h2_interface',
    'strain',
]
