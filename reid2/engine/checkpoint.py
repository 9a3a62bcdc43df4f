"""A Detectron2 checkpointer whose files are written atomically (temp file + rename) and read safely."""
import os

import torch

from reid2.utils.files import atomic_write
from reid2.utils.serialization import SafeCheckpointer


class AtomicCheckpointer(SafeCheckpointer):
    """Like ``DetectionCheckpointer``, but an interrupted save never leaves a truncated file, and loading
    never runs code from the file (``.pth`` / ``.pkl`` through ``reid2.utils.serialization``).

    The checkpoint is written to ``<name>.tmp`` and renamed over ``<name>``; the
    ``last_checkpoint`` tag is updated the same way, only after the checkpoint is complete.
    """

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))
