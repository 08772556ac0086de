"""Classification time on hostile answers: each shape at 10 KB and 100 KB (docs/benchmarks.md).

Run: .venv/bin/python scripts/bench_hostile.py
Prints, per answer shape, the CPU seconds `compare.classify` takes at each size and their ratio
(about 10 for linear work, about 100 for quadratic). Timings, not pass/fail.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from portal import compare

SHAPES = {
    "a + spaces + b": lambda n: "a" + " " * (n - 2) + "b",
    "'this is' + spaces + x": lambda n: "this is" + " " * (n - 8) + "x",
    "spaces only": lambda n: " " * n,
    "'I can't help' + spaces + 'but'": lambda n: "I can't help" + " " * (n - 15) + "but",
    "CJK 无法 repeated": lambda n: "无法" * (n // 2),
    "'i ' repeated": lambda n: "i " * (n // 2),
}


def cpu(text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        compare.classify(text)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    print(f"{'shape':36} {'10 KB (s)':>10} {'100 KB (s)':>11} {'ratio':>6}")
    for name, make in SHAPES.items():
        small, large = cpu(make(10_000)), cpu(make(100_000))
        print(f"{name:36} {small:10.4f} {large:11.4f} {large / max(small, 1e-6):6.1f}")


if __name__ == "__main__":
    main()
