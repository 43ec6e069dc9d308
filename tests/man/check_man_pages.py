#!/usr/bin/env python3
"""Checks the man pages in man/ against the programs they describe.

  check_man_pages.py render MAN_DIR
      each page renders with groff's man macros and every warning on (-ww), and none comes.
  check_man_pages.py options BIN_DIR MAN_DIR
      every option a program's --help lists (and its usage line names) is in its page's
      OPTIONS section.

Prints "SKIPPED: why" (ctest's skip) when groff is missing.
"""
import pathlib
import re
import shutil
import subprocess
import sys

PROGRAMS = ["ucoro-echo-server", "ucoro-echo-client", "ucoro-bench"]


def render(man_dir: pathlib.Path) -> int:
    groff = shutil.which("groff")
    if groff is None:
        print("SKIPPED: groff not found (package groff-base)")
        return 0
    failed = 0
    for program in PROGRAMS:
        page = man_dir / f"{program}.1"
        run = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(page)],
                             capture_output=True, text=True)
        if run.returncode != 0 or run.stderr:
            print(f"FAILED: {page.name} (groff exit {run.returncode}):\n{run.stderr}")
            failed += 1
        else:
            print(f"{page.name}: renders without warnings")
    return 1 if failed else 0


def help_options(help_text: str) -> set[str]:
    """The options a --help text defines: the first word of each indented option line
    ("  -q", "  -c,--connections UINT") and each bracketed one of the usage line."""
    options = set()
    for line in help_text.splitlines():
        match = re.match(r"^\s{2,}(-[^\s]+)", line)
        if match:
            options.update(o for o in match.group(1).split(",") if o.startswith("-"))
        options.update(re.findall(r"\[(--?[A-Za-z][\w-]*)", line))
    return options


def options_section(page: pathlib.Path) -> str:
    """The page's OPTIONS section (not an example that happens to use an option), with
    troff's escaped hyphens as hyphens and font changes removed."""
    text = page.read_text()
    match = re.search(r"^\.SH OPTIONS\n(.*?)^\.SH ", text, re.M | re.S)
    text = match.group(1) if match else ""
    text = re.sub(r"\\f[BIRP]", "", text)
    return text.replace("\\-", "-")


def options(bin_dir: pathlib.Path, man_dir: pathlib.Path) -> int:
    failed = 0
    for program in PROGRAMS:
        run = subprocess.run([str(bin_dir / program), "--help"], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"FAILED: {program} --help exited {run.returncode}")
            failed += 1
            continue
        listed = help_options(run.stdout)
        text = options_section(man_dir / f"{program}.1")
        missing = sorted(o for o in listed
                         if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", text))
        if missing:
            print(f"FAILED: {program}.1 OPTIONS section lacks {', '.join(missing)}")
            failed += 1
        else:
            print(f"{program}.1: has all {len(listed)} options of --help: "
                  f"{' '.join(sorted(listed))}")
    return 1 if failed else 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "render":
        return render(pathlib.Path(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "options":
        return options(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
