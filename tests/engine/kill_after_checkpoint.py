"""Run a training script and SIGKILL it right after the checkpoint ``$REID2_TEST_KILL_AFTER`` is written.

    REID2_TEST_KILL_AFTER=model_0000005 python tests/engine/kill_after_checkpoint.py tools/train_net.py ARGS...

The value is matched against the end of ``<save_dir>/<name>`` (e.g. ``stage3/model_0000005``). SIGKILL leaves no
chance to clean up, as an out-of-memory kill or a pre-empted node would.
"""
import os
import runpy
import signal
import sys

from reid2.engine import checkpoint

_target = os.environ["REID2_TEST_KILL_AFTER"]
_save = checkpoint.AtomicCheckpointer.save


def _save_then_die(self, name, **kwargs):
    _save(self, name, **kwargs)
    if self.save_dir and os.path.join(self.save_dir, name).endswith(_target):
        os.kill(os.getpid(), signal.SIGKILL)


checkpoint.AtomicCheckpointer.save = _save_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
