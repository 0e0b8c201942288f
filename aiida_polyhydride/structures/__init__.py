"""Pure-ASE builders of the training domain: bulk prototypes, dense H2 fluid, slab/H2 interfaces, samplers.

No AiiDA import here: these functions run anywhere ASE does.
"""
