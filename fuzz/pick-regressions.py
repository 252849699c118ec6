#!/usr/bin/env python3
"""Picks a small regression set for one fuzz target out of its (large, git-ignored) corpus.

Usage: fuzz/pick-regressions.py TARGET [MAX_FILES]    (default 100; stdlib only)

Runs the target's fuzz binary (build it first: `cargo fuzz build`, or `fuzz/run-all.sh`) in
libFuzzer's merge mode over fuzz/corpus/TARGET, which records the code (PCs) each input
covers, then greedily picks the input that covers the most code not yet covered (the
smaller one on a tie) until everything is covered or MAX_FILES are picked. The picks are
copied to fuzz/regressions/TARGET/ under their content hash, as libFuzzer names them; files
already there (crash reproducers) are kept. tests/fuzz_regressions.rs replays that directory
through the target's check on every `cargo nextest run`.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    target = sys.argv[1]
    max_files = int(sys.argv[2]) if len(sys.argv) == 3 else 100
    binary = os.path.join(FUZZ, "target", "x86_64-unknown-linux-gnu", "release", target)
    corpus = os.path.join(FUZZ, "corpus", target)
    out_dir = os.path.join(FUZZ, "regressions", target)
    if not os.path.isfile(binary):
        sys.exit(f"{binary} missing: run `RUSTC_BOOTSTRAP=1 cargo fuzz build` first")

    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        merged = os.path.join(tmp, "merged")
        os.mkdir(merged)
        subprocess.run(
            [binary, "-merge=1", f"-merge_control_file={control}", "-rss_limit_mb=2048",
             merged, corpus],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        files, size, cov = parse_control(control)

    everything = set().union(*cov.values()) if cov else set()
    covered, picks = set(), []
    while len(picks) < max_files:
        best = max(cov, key=lambda i: (len(cov[i] - covered), -size[i]), default=None)
        if best is None or not cov[best] - covered:
            break
        picks.append(best)
        covered |= cov[best]

    os.makedirs(out_dir, exist_ok=True)
    for i in picks:
        with open(files[i], "rb") as f:
            name = hashlib.sha1(f.read()).hexdigest()
        shutil.copyfile(files[i], os.path.join(out_dir, name))
    total = sum(size[i] for i in picks)
    print(f"{target}: {len(picks)} inputs ({total} bytes) of {len(files)} cover "
          f"{len(covered)} of {len(everything)} PCs the corpus reaches")


def parse_control(path):
    """libFuzzer's merge control file: input count, first-corpus count, the input paths,
    then per input `STARTED i size`, `FT i features...` and `COV i pcs...`."""
    with open(path) as f:
        lines = f.read().split("\n")
    n = int(lines[0])
    files = lines[2:2 + n]
    size, cov = {}, {}
    for line in lines[2 + n:]:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "STARTED":
            size[int(parts[1])] = int(parts[2])
        elif parts[0] == "COV":
            cov[int(parts[1])] = set(parts[2:])
    # An input that crashed or timed out has a STARTED line and nothing else.
    for i in size:
        cov.setdefault(i, set())
    return files, size, cov


if __name__ == "__main__":
    main()
