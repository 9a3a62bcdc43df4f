"""What the benchmark scripts share. Run every benchmark as a module from the repository root, e.g.
``python -m bench.bench_rank`` or ``python -m projects.DSA.bench.bench_dsa_synthetic``, so that ``bench.common``
and ``tests.reference`` are importable without editing ``sys.path``."""
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

__all__ = ["REPO", "emit_table", "evaluate_untrained", "train", "train_net"]


def train_net(args):
    """``tools/train_net.py ARGS`` in a subprocess from the repository root; exits with its stderr on failure."""
    res = subprocess.run([sys.executable, str(REPO / "tools/train_net.py"), *args], cwd=REPO,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])


def evaluate_untrained(cfg):
    """(results, seconds) of a randomly initialised person-search model of ``cfg``, loaded as ``--eval-only`` loads
    weights, with the explicit ``MODEL.WEIGHTS random``."""
    from detectron2.utils.env import seed_all_rng

    from reid2.engine import PersonSearchTrainer

    seed_all_rng(cfg.SEED)
    start = time.perf_counter()
    model = PersonSearchTrainer.build_model(cfg)
    PersonSearchTrainer.checkpointer_cls(model).load("random")
    results = PersonSearchTrainer.test(cfg, model)
    return results, time.perf_counter() - start


def train(cfg):
    """Train a person-search config with its trainer (which evaluates after the last iteration);
    (results, train+eval seconds)."""
    from detectron2.utils.env import seed_all_rng

    from reid2.engine import PersonSearchTrainer

    seed_all_rng(cfg.SEED)  # weights and the training sampler's order
    trainer = PersonSearchTrainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    return trainer._last_eval_results, time.perf_counter() - start  # stored by Detectron2's EvalHook


def emit_table(title, table, out=None):
    """Print ``title`` and ``table`` (a rendered table) and, when ``out`` is given, write them there too."""
    text = f"{title}\n\n{table}\n"
    print("\n" + text)
    if out:
        Path(out).write_text(text)
    return text
