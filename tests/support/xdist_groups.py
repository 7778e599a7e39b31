"""How `make test` shares the tests out between its two xdist workers (`--dist loadgroup`).

Test by test, to whichever worker is free, except groups that stay on one worker because they
share a fixture that is expensive to make, or take turns with something it holds:
- `tests/e2e`: one gateway process, one seeded community and one Chromium for the session, and
  the tests take turns with elder A's call button. Spread, each worker would start its own.
- `test_fuzz_api.py`: one seeded gateway per database for the module: a group per database
  (the item ids end in `[sqlite]` or `[postgres]`).
- `test_roles_table.py`: one seeded gateway (`world`) for the module.
The biggest groups are handed out first (xdist's loadscope reordering), the single tests after.

The groups are told from the node ids, in the scheduler (the controller has only ids, no items).
xdist's own `xdist_group` marker does not reach the scheduler with pytest 9.2: xdist 3.8 hands
the group over by appending it to `item._nodeid`, which pytest no longer reads, and the marked
tests are silently spread (pytest-dev/pytest-xdist#1386). A group appended by a fixed xdist
still counts.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadGroupScheduling

GROUPED_MODULES = {
    "tests/integration/test_roles_table.py": "roles-table",
}


def group_of(nodeid: str) -> str | None:
    """The group of a test by its node id, or None for a test that goes on its own."""
    path, _, rest = nodeid.partition("::")
    if path.startswith("tests/e2e/"):
        return "e2e"
    if path == "tests/integration/test_fuzz_api.py":
        for db in ("sqlite", "postgres"):
            if rest.endswith(f"[{db}]") or rest.endswith(f"-{db}]"):
                return f"fuzz-{db}"
        return "fuzz"
    return GROUPED_MODULES.get(path)


class SuiteGroupScheduling(LoadGroupScheduling):
    """xdist's loadgroup, with the groups of `group_of` as well as any `xdist_group`."""

    def _split_scope(self, nodeid: str) -> str:
        group = group_of(nodeid)
        return f"group:{group}" if group is not None else super()._split_scope(nodeid)


def make_scheduler(config: pytest.Config, log: object) -> SuiteGroupScheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None  # --dist load, loadfile, worksteal...: xdist's own
    return SuiteGroupScheduling(config, log)  # type: ignore[arg-type]


__all__ = ["SuiteGroupScheduling", "group_of", "make_scheduler"]
