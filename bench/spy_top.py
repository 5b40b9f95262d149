"""Summarise ``bench_e2e.py --spy FILE`` (py-spy raw stacks, GIL holders): the top functions.

Run: ``.venv/bin/python bench/spy_top.py FILE [N]``. Samples taken while the bot was still
importing and warming up are left out, so the figures are those of the jobs. Prints, per
function, the share of GIL samples spent in it (self) and under it (inclusive).
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

STARTUP = ("_find_and_load", "build_adapters", "warm_up")


def main(path: Path, top: int) -> None:
    """Print the top ``top`` functions by self and by inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or any(word in stack for word in STARTUP):
            continue
        n = int(count)
        frames = [re.sub(r" \((.*?):\d+\)", r" (\1)", f) for f in stack.split(";")[1:]]
        total += n
        own[frames[-1] if frames else "?"] += n
        for frame in set(frames):
            under[frame] += n
    print(f"{total} GIL samples after start-up")
    for title, counts in (("self", own), ("inclusive", under)):
        print(f"--- {title}")
        for name, n in counts.most_common(top):
            print(f"{n:7d} {100 * n / max(1, total):5.1f}%  {name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40)
