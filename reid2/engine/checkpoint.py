"""A Detectron2 checkpointer whose files are written atomically (temp file + rename)."""
import errno
import glob
import os
import shutil

import torch
from detectron2.checkpoint import DetectionCheckpointer

from reid2.utils.files import atomic_write


class AtomicCheckpointer(DetectionCheckpointer):
    """Like ``DetectionCheckpointer``, but an interrupted save never leaves a truncated file.

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
        try:
            atomic_write(save_file, lambda f: torch.save(data, f))
        except (OSError, RuntimeError) as e:
            full = _disk_full_error(e, save_file)
            if full is None:
                raise
            raise full from e
        self.tag_last_checkpoint(basename)

    def resume_or_load(self, path: str, *, resume: bool = True):
        """Detectron2's, but a last checkpoint that cannot be read is named and the newest readable checkpoint
        of the folder is used instead, with a warning."""
        if resume and self.has_checkpoint():
            last = self.get_checkpoint_file()
            usable = self._newest_readable(last)
            if usable is not None:
                return self.load(usable)
        return super().resume_or_load(path, resume=resume)

    def _newest_readable(self, last):
        candidates = [last] + sorted((p for p in glob.glob(os.path.join(self.save_dir, "model_*.pth"))
                                      if os.path.abspath(p) != os.path.abspath(last)),
                                     key=os.path.getmtime, reverse=True)
        for i, path in enumerate(candidates):
            try:
                self._load_file(path)
            except Exception as e:  # a truncated or corrupt file: torch, zipfile and pickle errors
                self.logger.warning("checkpoint %s cannot be read (%s: %s); trying an earlier one",
                                    path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                continue
            if i:
                self.logger.warning("resuming from %s, the newest readable checkpoint (the last one, %s, is corrupt)",
                                    path, last)
            return path
        raise RuntimeError(f"no readable checkpoint in {self.save_dir} (the last one, {last}, is corrupt); "
                           "remove the folder's last_checkpoint to start over")

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))


def _disk_full_error(exc, path):
    """An ``OSError(ENOSPC)`` naming ``path`` when ``exc`` comes from a full disk (torch reports it as
    ``RuntimeError: [enforce fail at inline_container.cc]``), else None."""
    folder = os.path.dirname(os.path.abspath(path))
    full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)
    if not full and isinstance(exc, RuntimeError) and "inline_container" in str(exc):
        try:
            full = shutil.disk_usage(folder).free < 64 * 2**20
        except OSError:
            full = False
    if not full:
        return None
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return OSError(errno.ENOSPC, f"disk full: cannot write checkpoint {path} ({free} on that device); free space "
                                 "or point OUTPUT_DIR elsewhere", path)
