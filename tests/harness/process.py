"""Child processes of the test servers: the code lives in ``bench.services.process``
(``scgw bench`` starts the same servers); this module keeps the tests' imports working.
``HarnessError`` is the package's ``ServiceError`` under the name the tests know."""

from bench.services.process import (
    KEEP_DIRS_ENV,
    TMPDIR_ENV,
    ServiceUser,
    child_env,
    default_base_dir,
    group_alive,
    kill_group,
    lookup_user,
    make_private_dir,
    remove_dir,
    run,
    running_as_root,
    spawn,
    tail,
    track,
    untrack,
    wait_group_gone,
)
from bench.services.process import ServiceError as HarnessError

__all__ = [
    "KEEP_DIRS_ENV",
    "TMPDIR_ENV",
    "HarnessError",
    "ServiceUser",
    "child_env",
    "default_base_dir",
    "group_alive",
    "kill_group",
    "lookup_user",
    "make_private_dir",
    "remove_dir",
    "run",
    "running_as_root",
    "spawn",
    "tail",
    "track",
    "untrack",
    "wait_group_gone",
]
