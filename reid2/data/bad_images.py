"""``DATALOADER.SKIP_BAD_IMAGES``: unreadable images skipped and counted instead of stopping the run.

By default an unreadable or truncated image is an error naming the file. With the option, a training loader
replaces the sample by a fixed other one (the next readable image of the same identity / aspect group, in
dataset order, then any next readable image): the replacement depends only on the index and the data, so the
batch sequence stays the same for any ``num_workers`` and across ``--resume``. A test loader drops the image
(its query / gallery entry is missing from the evaluation). Each loader process warns at the 1st, 10th,
100th, ... skipped image, giving the count so far and the first file.
"""
import logging
from typing import Callable, Optional, Sequence

__all__ = ["BadImageCounter", "load_or_replace", "NonEmptyBatches", "readable_images"]

_logger = logging.getLogger(__name__)


class BadImageCounter:
    """Counts the distinct images skipped by one loader (in one process; each is decoded once) and warns with the
    count and the first file."""

    def __init__(self, what: str):
        self.what = what
        self.count = 0
        self.first = None
        self.bad = set()  # indices known to be unreadable: not decoded again

    def skipped(self, file_name: str, error: Exception, index: Optional[int] = None) -> None:
        self.count += 1
        if index is not None:
            self.bad.add(index)
        if self.first is None:
            self.first = f"{file_name} ({error})"
        if self.count == 1 or _is_power_of_ten(self.count):
            self.warn()

    def warn(self) -> None:
        if self.count:
            _logger.warning("%s: %d unreadable image(s) skipped (DATALOADER.SKIP_BAD_IMAGES); first: %s",
                            self.what, self.count, self.first)


def _is_power_of_ten(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1


def load_or_replace(load: Callable[[int], object], index: int, order: Optional[Sequence[Sequence[int]]],
                    file_name: Callable[[int], str], counter: BadImageCounter):
    """``load(index)``; when it raises ``OSError``, ``load`` of the first readable index of ``order`` (lists
    tried in turn, e.g. same identity then all, each read cyclically from just after ``index``). ``order`` is
    None for a test loader: the unreadable image is dropped (None returned). A missing file stays an error.

    Deterministic: the replacement is a function of ``index`` and which files are readable."""
    if index not in counter.bad:
        try:
            return load(index)
        except FileNotFoundError:
            raise  # a missing file means a wrong root or listing, not a bad image
        except OSError as e:
            counter.skipped(file_name(index), e, index)
    if order is None:
        return None
    for candidates in order:
        candidates = list(candidates)
        start = candidates.index(index) + 1 if index in candidates else 0
        for j in candidates[start:] + candidates[:start]:
            if j == index or j in counter.bad:
                continue
            try:
                return load(j)
            except FileNotFoundError:
                raise
            except OSError as e:
                counter.skipped(file_name(j), e, j)
    raise OSError(f"{counter.what}: no readable image left to replace {file_name(index)}")


class NonEmptyBatches:
    """A test loader without the batches whose every image was skipped (the collate function gives None)."""

    def __init__(self, loader):
        self.loader = loader
        self.dataset = loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return (batch for batch in self.loader if batch)


def readable_images(items: Sequence, file_name: Callable = lambda it: it, what: str = "images") -> list:
    """``items`` whose image decodes (each one read once); the others are counted and warned about. For the
    tools, whose outputs must list exactly the images that were embedded."""
    from reid2.utils.files import read_image_rgb

    counter, kept = BadImageCounter(what), []
    for item in items:
        try:
            read_image_rgb(file_name(item))
        except FileNotFoundError:
            raise
        except OSError as e:
            counter.skipped(file_name(item), e)
            continue
        kept.append(item)
    if counter.count and not _is_power_of_ten(counter.count) and counter.count != 1:
        counter.warn()
    return kept
