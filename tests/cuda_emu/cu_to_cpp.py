#!/usr/bin/env python3
"""Rewrites a CUDA source as C++ for cuda_emu (tests/cuda_emu/cuda_emu.h).

Two constructs are not C++ and are rewritten in place, keeping every line
where it was (diagnostics and sanitizer reports name the original file and
line through a #line directive):
  kernel<<<grid, block[, shared[, stream]]>>>(args)
      -> ::cuda_emu::bind(kernel, "kernel", ::cuda_emu::launch_config(grid, block...))(args)
  extern __shared__ T name[];
      -> T* name = ::cuda_emu::dynamic_shared<T>();
Everything else (__global__, __shared__, threadIdx, shuffles) is the header's.

usage: cu_to_cpp.py IN.cu OUT.cpp
"""
import os
import re
import sys

EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:<>, ]*?)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;")


def kernel_start(text, end):
    """Start of the kernel expression ending at `end` (exclusive): a qualified
    name, optionally followed by template arguments."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == ">":
        depth = 0
        while i > 0:
            i -= 1
            c = text[i]
            if c == ">":
                depth += 1
            elif c == "<":
                depth -= 1
                if depth == 0:
                    break
        else:
            raise SystemExit("cu_to_cpp: unbalanced template arguments before <<<")
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:"):
        i -= 1
    return i


def rewrite_launches(text):
    out = []
    pos = 0
    while True:
        open_at = text.find("<<<", pos)
        if open_at < 0:
            out.append(text[pos:])
            return "".join(out)
        close_at = text.find(">>>", open_at)
        if close_at < 0:
            raise SystemExit("cu_to_cpp: <<< without >>>")
        start = kernel_start(text, open_at)
        kernel = text[start:open_at].strip()
        if not kernel:
            raise SystemExit("cu_to_cpp: no kernel name before <<<")
        config = text[open_at + 3:close_at]
        name = " ".join(kernel.split()).replace('"', "")
        out.append(text[pos:start])
        out.append(f'::cuda_emu::bind({kernel}, "{name}", ::cuda_emu::launch_config({config}))')
        pos = close_at + 3


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text = EXTERN_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = ::cuda_emu::dynamic_shared<{m.group(1)}>();",
                             text)
    text = rewrite_launches(text)
    escaped = src.replace("\\", "\\\\").replace('"', '\\"')
    with open(dst + ".tmp", "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{escaped}"\n' + text)
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
