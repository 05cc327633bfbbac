"""Run benchmarks by name: ``python -m bench [NAME...]`` (default: all of them, in this order).

A benchmark is a module with ``main(argv) -> int`` or a package runnable with
``python -m``; register it here with one line.
"""

import subprocess
import sys
from typing import Dict, List

# name -> module run with `python -m`; keep this a plain registry.
BENCHMARKS: Dict[str, str] = {
    "pull": "bench.pull",
    "net": "bench.net",
    "run": "bench.run",
    "ansible": "bench.ansible",
}


def main(argv: List[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"== bench {name} ==", flush=True)
        status |= subprocess.run([sys.executable, "-m", BENCHMARKS[name]], check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
