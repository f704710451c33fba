"""Web processes freeze their start-up objects out of the garbage collector's walks and collect
young objects less often: full collections, which stall every open stream, become rare and short."""

import subprocess
import sys

from tests.processes import ROOT, process_env

PROBE = "import gc, dify_platform.asgi; print(gc.get_freeze_count(), gc.get_threshold()[0])"


def test_the_served_application_is_tuned_at_start_up() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=process_env(GC_GEN0_THRESHOLD="12345"),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    frozen, threshold = (int(value) for value in done.stdout.split()[-2:])
    # Django, the URL patterns and every view, imported before the freeze.
    assert frozen > 50_000
    assert threshold == 12345
