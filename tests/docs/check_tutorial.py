#!/usr/bin/env python3
"""Keeps docs/tutorial/ and the code it shows from drifting apart.

Every code block in a chapter that shows real code is preceded by a marker naming the file
and the region it comes from:

    <!-- snippet: examples/04_echo_server.cpp#accept_loop -->
    ```cpp
    ...
    ```

and the file marks the region with `ANCHOR: accept_loop` / `ANCHOR_END: accept_loop`
comments. This check fails if a block differs from its region (anchor lines left out,
common indentation removed), if a marker names a missing file or region, if a chapter
links a file that does not exist, or if a numbered example and its chapter do not name
each other. `--update` rewrites the blocks from the files instead of checking them.

usage: check_tutorial.py REPO_ROOT [--update]
"""
import pathlib
import re
import sys
import textwrap

MARKER = re.compile(r"^<!-- snippet: (?P<path>[^#\s]+)#(?P<region>[\w-]+) -->$")
ANCHOR = re.compile(r"(//|#) ANCHOR(_END)?: ")
LINK = re.compile(r"\]\((?!https?:|#)(?P<target>[^)#\s]+)")


def region_text(path, region):
    lines = path.read_text().splitlines()
    start = [i for i, l in enumerate(lines) if re.search(rf"ANCHOR: {region}$", l)]
    end = [i for i, l in enumerate(lines) if re.search(rf"ANCHOR_END: {region}$", l)]
    if len(start) != 1 or len(end) != 1 or end[0] < start[0]:
        return None
    body = [l for l in lines[start[0] + 1 : end[0]] if not ANCHOR.search(l)]
    return textwrap.dedent("\n".join(body)).strip("\n")


def check_chapter(root, chapter, update, problems):
    lines = chapter.read_text().splitlines()
    out = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        marker = MARKER.search(lines[i])
        i += 1
        if not marker:
            continue
        where = f"{chapter.relative_to(root)}:{i}"
        source = root / marker["path"]
        if not source.is_file():
            problems.append(f"{where}: no file {marker['path']}")
            continue
        expected = region_text(source, marker["region"])
        if expected is None:
            problems.append(f"{where}: no region '{marker['region']}' in {marker['path']}")
            continue
        if i >= len(lines) or not lines[i].startswith("```"):
            problems.append(f"{where}: the marker must be followed by a ``` code block")
            continue
        close = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if close is None:
            problems.append(f"{where}: unterminated code block")
            continue
        shown = "\n".join(lines[i + 1 : close])
        if shown != expected and not update:
            problems.append(f"{where}: block differs from {marker['path']}#{marker['region']}"
                            " (run tests/docs/check_tutorial.py . --update)")
        out.append(lines[i])
        out.extend(expected.splitlines() if update else lines[i + 1 : close])
        out.append(lines[close])
        i = close + 1
    # Links in the prose only: in a code block, `[capture](args)` is a lambda.
    prose = re.sub(r"^```.*?^```", "", chapter.read_text(), flags=re.M | re.S)
    for link in LINK.finditer(prose):
        if not (chapter.parent / link["target"]).exists():
            problems.append(f"{chapter.relative_to(root)}: broken link {link['target']}")
    if update:
        chapter.write_text("\n".join(out) + "\n")


def check_examples(root, problems):
    """Example NN names chapter NN in its header, and that chapter shows example NN."""
    for example in sorted((root / "examples").glob("[0-9][0-9]_*.cpp")):
        number = example.name[:2]
        named = re.search(r"^// Tutorial: (\S+)$", example.read_text(), re.M)
        if not named or not (root / named[1]).is_file():
            problems.append(f"{example.name}: its header must name its chapter "
                            "(// Tutorial: docs/tutorial/...)")
            continue
        chapter = root / named[1]
        if not chapter.name.startswith(number):
            problems.append(f"{example.name}: names {named[1]}, not chapter {number}")
        if f"examples/{example.name}#" not in chapter.read_text():
            problems.append(f"{named[1]}: shows no code from examples/{example.name}")


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != "--update"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = pathlib.Path(sys.argv[1]).resolve()
    update = len(sys.argv) == 3
    problems = []
    chapters = sorted((root / "docs" / "tutorial").glob("*.md"))
    if not chapters:
        problems.append("no chapters in docs/tutorial/")
    for chapter in chapters:
        check_chapter(root, chapter, update, problems)
    check_examples(root, problems)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{len(chapters)} tutorial pages agree with the code they show")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
