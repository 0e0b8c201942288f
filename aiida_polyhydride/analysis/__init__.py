"""Pure numpy/ASE code; never imports aiida."""
