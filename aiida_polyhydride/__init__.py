"""AiiDA plugin for active-learning Allegro potentials and surface-melting MD of superhydrides under pressure."""

__version__ = '0.1.0'
