"""Parser of MDCalculation: trajectory and committee deviations, output also when the run stopped early."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from ..analysis.frames import frames_from_extxyz
from ..runners.md import FILES

#: per-frame info of the runner's trajectory.extxyz stored as arrays of the TrajectoryData
FRAME_ARRAYS = ('temperature_K', 'pressure_GPa', 'volume', 'sigma_f', 'sigma_e', 'sigma_v')


class MDParser(Parser):
    """Everything dumped before a blow-up or an interruption is kept."""

    def parse(self, **kwargs):
        names = self.retrieved.base.repository.list_object_names()
        if FILES['trajectory'] in names:
            frames = frames_from_extxyz(self.retrieved.base.repository.get_object_content(FILES['trajectory']))
            if frames:
                self.out('trajectory', trajectory_node(frames))
        if FILES['deviations'] in names:
            content = self.retrieved.base.repository.get_object_content(FILES['deviations'], mode='rb')
            with np.load(io.BytesIO(content)) as arrays:
                deviations = orm.ArrayData()
                for key in arrays.files:
                    deviations.set_array(key, arrays[key])
            self.out('deviations', deviations)
        if FILES['result'] not in names:
            return self.exit_codes.ERROR_NO_RESULT
        result = json.loads(self.retrieved.base.repository.get_object_content(FILES['result']))
        self.out('result', orm.Dict(result))
        status = result.get('status')
        if status == 'error':
            return self.exit_codes.ERROR_INPUT.format(reason=result.get('reason'))
        if status == 'blowup':
            return self.exit_codes.ERROR_BLOWUP.format(reason=result.get('reason'))
        if status in ('interrupted', 'walltime'):
            return self.exit_codes.ERROR_INTERRUPTED.format(status=status, step=result.get('n_steps_done'))
        return None


def trajectory_node(frames) -> orm.TrajectoryData:
    """TrajectoryData of the dumped frames: positions, cells, steps, times (fs), energies, forces, info arrays."""
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(
        symbols=frames[0].get_chemical_symbols(),
        positions=np.array([frame.positions for frame in frames]),
        stepids=np.array([frame.info['step'] for frame in frames], dtype=int),
        cells=np.array([frame.cell.array for frame in frames]),
        times=np.array([frame.info['time_fs'] for frame in frames], dtype=float),
    )
    trajectory.set_array('energies', np.array([frame.get_potential_energy() for frame in frames]))
    # the driving model's forces: with DFT labels of the same frames they give its true error (calibration)
    trajectory.set_array('forces', np.array([frame.get_forces() for frame in frames]))
    for key in FRAME_ARRAYS:
        trajectory.set_array(key, np.array([frame.info.get(key, np.nan) for frame in frames], dtype=float))
    return trajectory
