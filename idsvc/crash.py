"""A crash-injection hook for the reliability suite: ``IDSVC_CRASH_AT=<point>`` kills the process with SIGKILL when it
reaches that named point, so the crash matrix tests each step of a write (crops written, registry committed, index
written) deterministically rather than by timing races.

It is read at the moment a point is reached (not at import), costs one dictionary lookup otherwise, and is documented
in ``docs/reliability.md`` as a test hook: never set it in production.
"""

from __future__ import annotations

import os
import signal

#: The named points, in the order a write reaches them (the crash matrix iterates over this).
POINTS = (
    "enroll.crops_written",  # crops on disk, template rows inserted, transaction not committed
    "enroll.committed",  # registry committed, index not yet saved
    "delete.committed",  # rows deleted, index manifest and crop files not yet touched
    "index.temp_written",  # a new index file written to its temp name, not yet renamed into place
    "upgrade.embedded",  # reindex --model: a batch of new-model embeddings committed, switch not yet made
    "import.committed",  # an archive's rows and crops committed, index not yet rebuilt
)


def crash_point(name: str) -> None:
    """Die here, as a power cut would (no cleanup, no finally blocks), when ``IDSVC_CRASH_AT`` names this point."""
    if os.environ.get("IDSVC_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
