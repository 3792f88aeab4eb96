"""S6: the time of ``import <module>`` in a fresh interpreter, measured inside it.

Run as ``python _import.py <module>``; nothing but ``sys`` and ``time`` is imported first.
"""

import sys
import time

t0 = time.perf_counter()
__import__(sys.argv[1])
t1 = time.perf_counter()
sys.stdout.write('\nRESULT {"status": "ok", "import_s": %r}\n' % (t1 - t0))
