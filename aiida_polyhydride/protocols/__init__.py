"""YAML protocols of the workflows (fast / moderate / precise), read like aiida-quantumespresso's."""

from pathlib import Path

PROTOCOL_DIRECTORY = Path(__file__).parent


def protocol_file(name: str) -> Path:
    """Path of ``protocols/<name>.yaml``."""
    return PROTOCOL_DIRECTORY / f'{name}.yaml'
