#!/usr/bin/env python3
"""Runs the shell examples of README.md and docs/*.md, so the docs cannot drift
from the code.

What runs: every fenced code block whose info string is `sh`:

    ```sh
    ./build/nodes/myriad selfcheck
    ```

Blocks marked anything else (`text` for commands that rebuild, need a GPU or
take minutes, and for output; `cpp`, `json`, ...) are shown, not run. A fence
without an info string is an error: every block says whether it runs.

How: each block runs as one `bash -euo pipefail` script from the repository
root, with a timeout (--timeout, default 60 s). Blocks run in file order
(README.md, then docs/*.md by name) and, within a file, top to bottom, so a
block may use a file that an earlier block of the same file wrote. Examples
write under build/docs-examples/, which is emptied first. The first failing
block does not stop the run: every failure is printed with its file and line,
its script and its output, and the exit status is 1 if any block failed.

The build folder: examples say `build/...` (scripts/build's folder). When
--build names another folder (e.g. ctest from build-asan), blocks run in a
temporary copy of the root made of symlinks, whose `build` points at --build;
nothing in the blocks is rewritten.

Also checked, for every file read: relative Markdown links point at files that
exist, and no block names the old fixture location (`../shared/`) or an
absolute /work/ path.

usage: run_doc_examples.py [--root DIR] [--build DIR] [--timeout S] [--list] [FILE.md ...]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FORBIDDEN = [(re.compile(r"\.\./shared/"), "the old fixture location ../shared/ (use tests/fixtures/)"),
             (re.compile(r"(^|[\s\"'=])/work/"), "an absolute /work/ path (examples run from the repository root)")]


class Block:
    def __init__(self, path, line, info, text):
        self.path, self.line, self.info, self.text = path, line, info, text

    @property
    def runnable(self):
        return self.info.split()[0] == "sh" if self.info.split() else False


def parse(path, rel):
    """Returns (blocks, problems) of one Markdown file."""
    blocks, problems = [], []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        start = i + 1
        body = []
        i += 1
        while i < len(lines):
            c = re.match(r"^ {0,3}(`{3,}|~{3,})\s*$", lines[i])
            if c and c.group(1)[0] == fence[0] and len(c.group(1)) >= len(fence):
                break
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        else:
            problems.append(f"{rel}:{start}: fenced block never closed")
        if not info:
            problems.append(f"{rel}:{start}: fenced block without an info string "
                            "(`sh` runs in the docs.examples test; `text` does not)")
        blocks.append(Block(rel, start, info, "\n".join(body) + "\n"))
        i += 1
    return blocks, problems


def strip_code(text):
    """The text without fenced blocks and inline code (links there are not links)."""
    text = re.sub(r"(?ms)^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1\s*$", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path):
    """GitHub's anchors for the headings of a Markdown file."""
    seen, out = {}, set()
    text = re.sub(r"(?ms)^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1\s*$", "", open(path, encoding="utf-8").read())
    for m in re.finditer(r"(?m)^#{1,6}\s+(.*?)\s*#*\s*$", text):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def check_links(path, rel, root):
    problems = []
    for m in LINK.finditer(strip_code(open(path, encoding="utf-8").read())):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not full.startswith(os.path.normpath(root)) or not os.path.exists(full):
            problems.append(f"{rel}: link to {target}: no such file")
        elif anchor and full.endswith(".md") and anchor not in anchors(full):
            problems.append(f"{rel}: link to {target}: no heading with that anchor")
    return problems


def overlay(root, build):
    """A temporary folder that looks like the root, with build -> `build`."""
    tmp = tempfile.mkdtemp(prefix="myriad-docs-")
    for name in os.listdir(root):
        if name != "build":
            os.symlink(os.path.join(root, name), os.path.join(tmp, name))
    os.symlink(build, os.path.join(tmp, "build"))
    return tmp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--root", default=os.path.normpath(os.path.join(here, "..", "..")))
    ap.add_argument("--build", help="the build folder (default: ROOT/build)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per block (default 60)")
    ap.add_argument("--list", action="store_true", help="list the blocks and whether they run; run nothing")
    ap.add_argument("files", nargs="*", help="Markdown files relative to the root (default: README.md docs/*.md)")
    a = ap.parse_args()

    root = os.path.realpath(a.root)
    build = os.path.realpath(a.build or os.path.join(root, "build"))
    files = a.files or ["README.md"] + sorted(
        os.path.join("docs", f) for f in os.listdir(os.path.join(root, "docs")) if f.endswith(".md"))

    blocks, problems = [], []
    for rel in files:
        path = os.path.join(root, rel)
        b, p = parse(path, rel)
        blocks += b
        problems += p + check_links(path, rel, root)
        for blk in b:
            for pat, why in FORBIDDEN:
                for n, line in enumerate(blk.text.split("\n")):
                    if pat.search(line):
                        problems.append(f"{blk.path}:{blk.line + n}: {why}: {line.strip()}")
    runnable = [b for b in blocks if b.runnable]

    if a.list:
        for b in blocks:
            first = b.text.strip().split("\n")[0][:90] if b.text.strip() else ""
            print(f"{'RUN ' if b.runnable else '    '} {b.path}:{b.line} [{b.info}] {first}")
        print(f"{len(runnable)} of {len(blocks)} blocks run")
        return 0

    if not os.path.isdir(build):
        print(f"run_doc_examples: build folder {build} does not exist (run scripts/build)", file=sys.stderr)
        return 1
    if not runnable and not a.files:
        problems.append("no runnable (```sh) blocks found")

    cwd = root if build == os.path.realpath(os.path.join(root, "build")) else overlay(root, build)
    shutil.rmtree(os.path.join(build, "docs-examples"), ignore_errors=True)
    env = dict(os.environ)
    failed = []
    t_all = time.monotonic()
    try:
        for b in runnable:
            t0 = time.monotonic()
            try:
                r = subprocess.run(["bash", "-euo", "pipefail", "-c", b.text], cwd=cwd, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=a.timeout)
                rc, out = r.returncode, r.stdout.decode("utf-8", "replace")
            except subprocess.TimeoutExpired as e:
                rc, out = "timeout", (e.stdout or b"").decode("utf-8", "replace")
                out += f"\n[killed after {a.timeout:.0f} s]"
            dt = time.monotonic() - t0
            status = "ok" if rc == 0 else "FAILED"
            print(f"{status:6} {dt:6.1f} s  {b.path}:{b.line}", flush=True)
            if rc != 0:
                failed.append((b, rc, out))
    finally:
        if cwd != root:
            shutil.rmtree(cwd, ignore_errors=True)

    for b, rc, out in failed:
        print(f"\n==== {b.path}:{b.line}: exit {rc}")
        print("---- block:")
        print(b.text.rstrip())
        print("---- output (last 60 lines):")
        print("\n".join(out.rstrip().split("\n")[-60:]))
    for p in problems:
        print(f"\n==== {p}")
    print(f"\n{len(runnable) - len(failed)} of {len(runnable)} runnable blocks passed "
          f"({len(blocks) - len(runnable)} blocks not run) in {time.monotonic() - t_all:.1f} s; "
          f"{len(problems)} other problem(s)")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
