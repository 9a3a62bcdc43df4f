"""Every config path the READMEs mention exists and builds (a moved config must not leave a dead reference)."""
import re

import pytest

from tests.helpers import REPO

READMES = sorted([REPO / "README.md", REPO / "datasets" / "README.md", *(REPO / "projects").glob("*/README.md"),
                  *(REPO / "tools").glob("README.md"), *(REPO / "bench").glob("README.md")])
CONFIG_PATH = re.compile(r"(?<![\w/.-])((?:projects/[\w-]+/)?configs/[\w./{},-]+?\.yaml)")


def _expand(path):
    """``configs/x/{a,b}.yaml`` → both paths."""
    m = re.search(r"\{([^}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in _expand(path[:m.start()] + alt + path[m.end():])]


def _mentions():
    found = set()
    for readme in READMES:
        for m in CONFIG_PATH.finditer(readme.read_text()):
            found.update((readme.relative_to(REPO).as_posix(), p) for p in _expand(m.group(1)))
    return sorted(found)


def test_readmes_mention_configs():
    assert len(_mentions()) > 10  # the pattern finds the READMEs' config paths


@pytest.mark.parametrize("readme,path", _mentions(), ids=lambda x: x)
def test_config_paths_in_readmes_exist_and_build(readme, path):
    from reid2.config import load_config

    assert (REPO / path).is_file(), f"{readme} mentions {path}, which does not exist"
    load_config(str(REPO / path))
