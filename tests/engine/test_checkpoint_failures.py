"""AtomicCheckpointer on failure: a full disk is named as such, a corrupt last checkpoint falls back."""
import errno
import logging
import os

import pytest
import torch
from torch import nn

import reid2.engine.checkpoint as ckpt_mod
from reid2.engine.checkpoint import AtomicCheckpointer


def _ckpt(folder, value):
    model = nn.Linear(2, 1)
    nn.init.constant_(model.weight, value)
    return model, AtomicCheckpointer(model, save_dir=str(folder))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")])
def test_full_disk_is_reported_as_such_naming_the_file(tmp_path, monkeypatch, error):
    _, ck = _ckpt(tmp_path, 1.0)

    def save(obj, f):
        f.write(b"partial")
        raise error

    monkeypatch.setattr(ckpt_mod.torch, "save", save)
    monkeypatch.setattr(ckpt_mod.shutil, "disk_usage", lambda p: type("U", (), {"free": 1024})())
    with pytest.raises(OSError, match=r"disk full: cannot write checkpoint .*model_0000001\.pth \(0\.0 MiB free") as e:
        ck.save("model_0000001")
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []  # neither the temp file nor a last_checkpoint tag


def test_other_save_errors_pass_unchanged(tmp_path, monkeypatch):
    _, ck = _ckpt(tmp_path, 1.0)
    monkeypatch.setattr(ckpt_mod.torch, "save", lambda obj, f: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="^other$"):
        ck.save("model_0000001")


def test_resume_skips_a_corrupt_last_checkpoint_with_a_warning(tmp_path, caplog):
    _, ck = _ckpt(tmp_path, 1.0)
    ck.save("model_0000001")
    _, ck = _ckpt(tmp_path, 3.0)
    ck.save("model_0000003")
    last = tmp_path / "model_0000003.pth"
    last.write_bytes(last.read_bytes()[:100])  # truncated, e.g. a copy cut short
    model, ck = _ckpt(tmp_path, 0.0)
    with caplog.at_level(logging.WARNING):
        ck.resume_or_load("", resume=True)
    assert torch.all(model.weight == 1.0)
    assert f"checkpoint {last} cannot be read" in caplog.text
    assert "resuming from" in caplog.text and "model_0000001.pth" in caplog.text
    (tmp_path / "model_0000001.pth").write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="no readable checkpoint.*model_0000003.pth"):
        _ckpt(tmp_path, 0.0)[1].resume_or_load("", resume=True)
