"""CalcJobs of aiida-polyhydride (and the pure configuration builders they use)."""
