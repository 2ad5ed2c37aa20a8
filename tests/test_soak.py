"""The reduced soak (2 min) of ``make soak``: a real headless child on the Viky camera.

The 30-minute run is ``make soak`` (bench/results/soak.md). Two minutes cannot measure a slope
of 0.5 MB/min, so this one asserts the books exactly and a slope bound that any per-frame leak
would blow through (one kept 512 x 512 frame per result at ~20 frames/s is > 300 MB/min).
"""

from __future__ import annotations

import pytest

from bench.soak import soak


@pytest.mark.camera
@pytest.mark.slow
def test_two_minute_soak_keeps_the_books_and_memory_flat() -> None:
    result = soak(120.0, every_s=5.0, warmup_s=45.0)
    s = result.summary
    assert result.exit_code == 143, "SIGTERM must stop the run cleanly"
    assert s and s["lost"] == 0
    assert result.rows == s["pass"] + s["ng"] + s["error"] == result.lines > 100
    assert s["acquired"] == result.lines + s["dropped"]
    assert result.slope_mb_per_min < 5.0, [(x.t_s, x.rss_mb) for x in result.samples]
