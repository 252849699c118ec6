# Shortcuts for common tasks. `just` is optional: every recipe is a plain command.

# Run prism on the embedded defaults (RTMP on 0.0.0.0:1935).
run *ARGS:
    cargo run --release -- serve {{ARGS}}

# Every check and test, as CI runs it (installs test tools when missing).
test:
    scripts/test

# Unit and property tests only: fast, no external tools.
unit:
    cargo test --lib

# Integration tests only (real ffmpeg, GStreamer, rtmpdump).
integration:
    cargo nextest run --tests

# Format and lint.
lint:
    cargo fmt --all
    cargo clippy --all-targets -- -D warnings

# Validate a config file and print the effective configuration.
check-config FILE="":
    cargo run -- check-config {{ if FILE != "" { "--config " + FILE } else { "" } }}

# Run every fuzz target for SECONDS each (see fuzz/README.md).
fuzz SECONDS="30":
    fuzz/run-all.sh {{SECONDS}}

# Publish a generated test pattern to a local prism.
publish-test KEY="test":
    ffmpeg -re -f lavfi -i testsrc=size=1280x720:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast -g 60 -c:a aac -f flv rtmp://127.0.0.1/live/{{KEY}}

# Watch a local stream.
play KEY="test":
    ffplay rtmp://127.0.0.1/live/{{KEY}}

# Criterion micro-benchmarks of the hot paths (results in BENCHMARKS.md).
bench:
    cargo bench --bench chunk --bench hub

# End-to-end fan-out benchmark against nginx-rtmp (BENCHMARKS.md); e.g.
# `just bench-fanout --n 1,8 --repeats 1`, `just bench-fanout --scale`.
bench-fanout *ARGS:
    scripts/bench-fanout {{ARGS}}
