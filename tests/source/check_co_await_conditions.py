#!/usr/bin/env python3
"""Fails on a bare co_await used as a whole if/while condition in the project's C++.

g++ 12.2 (Debian 12's compiler) miscompiles `if (co_await x)`, `if (!co_await x)` and
`while (co_await x)`: with a bool-returning awaiter the branch is taken wrongly, or the
program crashes (docs/tutorial/01_coroutines.md). A condition that names the result,
`if (const bool ok = co_await x; ok)`, compiles correctly. usage: check ROOT
"""
import pathlib
import re
import sys

BARE = re.compile(r"\b(?:if|while)\s*\(\s*!?\s*co_await\b")


def main():
    root = pathlib.Path(sys.argv[1])
    found = []
    for folder in ("include", "src", "tests", "examples", "bench"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".cpp", ".hpp", ".h", ".cc"):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                code = line.split("//", 1)[0]
                if BARE.search(code):
                    found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} bare co_await condition(s): name the result, "
              "`if (const bool ok = co_await x; ok)` (g++ 12 miscompiles the bare form)")
        return 1
    print("no bare co_await conditions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
