"""The mutation score of each decision module, from the last ``mutmut run``.

Run by ``make mutate`` after mutmut (or by hand: ``python benchmarks/mutation_scores.py``).
Reads ``mutants/grpc_terminal/<module>.py.meta``, the results mutmut keeps,
and prints one line per module::

    module              mutants  killed  survived  no tests  equivalent  score

The score is killed (timeouts count as killed) over all mutants less the
ones listed as equivalent in ``benchmarks/mutation_equivalent_<module>.txt``
(one mutant name per line, then `` # `` and why no test can tell it apart). A
mutant no test reaches counts against the score. With ``--survivors`` it
also lists the mutants still alive, for ``mutmut show <name>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILES = "mutation_equivalent_*.txt"  # one per module, beside this script

# mutmut's exit codes (mutmut/stats.py): 1 and 3 kill, 0 survives, 5 and 33 mean
# no test covered the mutant, 34 skipped, timeouts count as killed.
_KILLED = {1, 3, 36, 24, -24, 152, 255}
_SURVIVED = {0}
_NO_TESTS = {5, 33}


def equivalent_mutants() -> set[str]:
    """The mutant names recorded as equivalent (no behaviour can tell them apart)."""
    names = set()
    for listing in sorted((ROOT / "benchmarks").glob(EQUIVALENT_FILES)):
        for line in listing.read_text(encoding="utf-8").splitlines():
            name = line.split("#", 1)[0].strip()
            if name:
                names.add(name)
    return names


def scores(mutants_dir: Path) -> list[tuple[str, dict[str, int], list[str]]]:
    """Per module: counts by outcome and the surviving mutant names."""
    equivalent = equivalent_mutants()
    rows = []
    for meta in sorted((mutants_dir / "grpc_terminal").glob("*.py.meta")):
        codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        counts = {"mutants": 0, "killed": 0, "survived": 0, "no tests": 0, "equivalent": 0, "unchecked": 0}
        alive = []
        for name, code in codes.items():
            counts["mutants"] += 1
            if name in equivalent:
                counts["equivalent"] += 1
            elif code in _KILLED:
                counts["killed"] += 1
            elif code in _NO_TESTS:
                counts["no tests"] += 1
                alive.append(name)
            elif code in _SURVIVED:
                counts["survived"] += 1
                alive.append(name)
            elif code is None:
                counts["unchecked"] += 1
            elif code != 34:
                counts["survived"] += 1  # suspicious or crashed: not a clean kill
                alive.append(name)
        rows.append((meta.name.removesuffix(".py.meta"), counts, sorted(alive)))
    return rows


def main(argv: list[str]) -> int:
    mutants_dir = ROOT / "mutants"
    if not mutants_dir.is_dir():
        print("no mutants/ folder: run `make mutate` first", file=sys.stderr)
        return 1
    rows = scores(mutants_dir)
    head = ("module", "mutants", "killed", "survived", "no tests", "equiv.", "score")
    print("{:<14} {:>7} {:>7} {:>8} {:>8} {:>6} {:>7}".format(*head))
    for module, c, alive in rows:
        judged = c["mutants"] - c["equivalent"] - c["unchecked"]
        score = 100.0 * c["killed"] / judged if judged else 0.0
        print(
            f"{module:<14} {c['mutants']:>7} {c['killed']:>7} {c['survived']:>8} {c['no tests']:>8}"
            f" {c['equivalent']:>6} {score:>6.1f}%"
            + (f"  ({c['unchecked']} not run)" if c["unchecked"] else "")
        )
        if "--survivors" in argv:
            for name in alive:
                print(f"    {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
