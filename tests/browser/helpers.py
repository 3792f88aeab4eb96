"""What the browser journeys share: reading canvas pixels, waiting on the page."""

from __future__ import annotations

import time
from typing import Any, Callable

# Counts the opaque pixels of a chart's canvas within a small distance of each given colour.
COUNT_COLOURS_JS = """
([selector, colours]) => {
  const canvas = document.querySelector(selector);
  if (!canvas) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const want = colours.map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
  const counts = want.map(() => 0);
  let painted = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] < 220) continue;
    painted++;
    for (let j = 0; j < want.length; j++) {
      const w = want[j];
      if (Math.abs(data[i] - w[0]) + Math.abs(data[i + 1] - w[1]) + Math.abs(data[i + 2] - w[2]) < 48) counts[j]++;
    }
  }
  return {counts, painted, width: canvas.width, height: canvas.height};
}
"""

CANVAS_DIGEST_JS = """
(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let h = 0;
  for (let i = 0; i < data.length; i += 7) h = (h * 31 + data[i]) | 0;
  return h;
}
"""


def wait_until(check: Callable[[], Any], timeout: float, message: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `message` after `timeout` s.

    `check` should call the page: Playwright delivers page events only inside its calls.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message} (after {timeout}s; last seen: {last!r})")
