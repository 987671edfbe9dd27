#!/usr/bin/env bash
# The GPU check in one call: on the machine it runs on, with the adapter byol picks (or --adapter),
# it lists the adapter, runs the test suite on it, the kernel bench and the step bench (kernels
# tuned by measurement) and, where Python has torch, the PyTorch yardstick of the same steps, and
# writes one markdown report with every phase's wall time.
#
#   benches/gpu-check.sh [--adapter NAME] [--out REPORT.md] [--bin DIR] [--configs LIST] [--quick]
#
# --bin DIR   prebuilt release executables instead of cargo (a device machine without Rust): DIR/byol,
#             DIR/kernels, DIR/step (the bench executables) and DIR/tests/* (test executables);
#             make it here with `benches/gpu-check.sh --pack DIR` (stripped, the kernel and step
#             tests only, and DIR.tar.xz beside it to carry within a device call's 64 MiB).
# --configs   step bench configurations (default: tiny,small,resnet18 on a GPU; tiny,small on a
#             software adapter, where resnet18's step takes minutes).
# --quick     fewer samples, and the kernel bench on the matmul cases only.
# On a GPU the whole check takes a few minutes; on llvmpipe (2 cores) about 15.
set -uo pipefail
cd "$(dirname "$0")/.."

adapter="" out="gpu-check.md" bin="" configs="" quick=0 pack=""
while [ $# -gt 0 ]; do
    case "$1" in
        --adapter) adapter="$2"; shift ;;
        --out) out="$2"; shift ;;
        --bin) bin="$2"; shift ;;
        --configs) configs="$2"; shift ;;
        --quick) quick=1 ;;
        --pack) pack="$2"; shift ;;
        *) echo "gpu-check.sh: unknown flag $1 (see the header of $0)" >&2; exit 2 ;;
    esac
    shift
done

# The tests a GPU must pass: every kernel's gradient check and the whole step's.
gpu_tests=(ops_matmul ops_conv2d ops_batch_norm ops_elementwise ops_reduce ops_pooling ops_byol_loss
    ops_l2_normalize ops_group_norm ops_layer_norm ops_weight_std ops_cross_entropy ops_info_nce
    ops_nt_xent ops_concat ops_bias ops_eigen chain chain_cnn train_step_grad tune engine loop_limit)

if [ -n "$pack" ]; then
    mkdir -p "$pack/tests"
    cargo build --release --bin byol || exit 1
    cargo bench --no-run --bench kernels --bench step 2>&1 | tee /tmp/gpu-check-benches.log >&2 || exit 1
    for b in kernels step; do
        f=$(grep -o "target/release/deps/$b-[0-9a-f]*" /tmp/gpu-check-benches.log | head -1)
        cp "$f" "$pack/$b"
    done
    args=()
    for t in "${gpu_tests[@]}"; do args+=(--test "$t"); done
    cargo test --release --no-run "${args[@]}" 2>&1 | tee /tmp/gpu-check-tests.log >&2 || exit 1
    for t in "${gpu_tests[@]}"; do
        f=$(grep -o "target/release/deps/$t-[0-9a-f]*" /tmp/gpu-check-tests.log | head -1)
        cp "$f" "$pack/tests/$t"
    done
    cp target/release/byol "$pack/byol"
    strip "$pack"/byol "$pack"/kernels "$pack"/step "$pack"/tests/* 2>/dev/null
    # Compressed, it travels in a device call: unpack there with `tar -xJf` before --bin.
    tar -C "$pack" -cJf "$pack.tar.xz" .
    du -sh "$pack" "$pack.tar.xz"
    exit 0
fi

[ -n "$adapter" ] && export BYOL_ADAPTER="$adapter"
export BYOL_TUNE_CACHE="${BYOL_TUNE_CACHE:-$PWD/target/gpu-check-tune.json}"
mkdir -p "$(dirname "$BYOL_TUNE_CACHE")"
if [ -n "$bin" ]; then
    byol="$bin/byol"
else
    cargo build --release --bin byol --benches >&2 || exit 1
    byol="target/release/byol"
fi

status=0
report() { echo "$@" >>"$out"; }
phase_start=$SECONDS
phase() {
    report ""
    report "## $1"
    report ""
    echo "== $1" >&2
    phase_start=$SECONDS
}
took() { report ""; report "($(( SECONDS - phase_start )) s)"; }

: >"$out"
report "# byol-wgpu GPU check"
report ""
report "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) CPU cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
report "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

phase "adapter"
report '```'
"$byol" adapters >>"$out" 2>&1 || status=1
"$byol" info >>"$out" 2>&1 || status=1
report '```'
took
software=0
grep -q "device type: *Cpu" "$out" && software=1
if [ -z "$configs" ]; then
    if [ $software = 1 ]; then configs="tiny,small"; else configs="tiny,small,resnet18"; fi
fi

phase "tests on this adapter"
report "| test binary | result |"
report "|---|---|"
for t in "${gpu_tests[@]}"; do
    if [ -n "$bin" ]; then
        [ -x "$bin/tests/$t" ] || { report "| $t | not packed |"; continue; }
        log=$("$bin/tests/$t" 2>&1)
    else
        log=$(cargo test --release --test "$t" 2>&1)
    fi
    rc=$?
    line=$(grep "^test result" <<<"$log" | tail -1)
    [ $rc = 0 ] || { status=1; line="FAILED: ${line:-$(tail -3 <<<"$log" | tr '\n' ' ')}"; }
    report "| $t | ${line:-no result} |"
done
took

samples=10 filter=""
[ $quick = 1 ] && { samples=3; filter="matmul"; }
phase "kernel bench (kernels tuned by measurement)"
if [ -n "$bin" ]; then
    "$bin/kernels" $filter --samples $samples --tune >>"$out" 2>/dev/null || status=1
else
    cargo bench --bench kernels -- $filter --samples $samples --tune >>"$out" 2>/dev/null || status=1
fi
took

phase "step bench (kernels tuned by measurement)"
step_samples=$samples
[ $software = 1 ] && step_samples=3
for c in ${configs//,/ }; do
    name=$c
    [ "$c" = resnet18 ] && name="resnet18 96px"
    if [ -n "$bin" ]; then
        "$bin/step" --config "$name" --samples $step_samples --tune >>"$out" 2>/dev/null || status=1
    else
        cargo bench --bench step -- --config "$name" --samples $step_samples --tune >>"$out" 2>/dev/null || status=1
    fi
    report ""
done
took

phase "PyTorch yardstick (../shared/peer/pytorch_step.py)"
py=""
for p in "${PYTHON:-}" python3 /tmp/torch/bin/python; do
    [ -n "$p" ] && "$p" -c "import torch" 2>/dev/null && { py=$p; break; }
done
peer=""
for f in ../shared/peer/pytorch_step.py shared/peer/pytorch_step.py; do [ -f "$f" ] && peer=$f; done
if [ -z "$py" ] || [ -z "$peer" ]; then
    report "skipped: no Python with torch (set PYTHON) or no pytorch_step.py"
else
    device=cpu
    "$py" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null && device=cuda
    report '```'
    "$py" "$peer" --device $device --configs "$configs" >>"$out" 2>&1 || status=1
    report '```'
fi
took

report ""
report "exit status: $status"
echo "report: $out" >&2
exit $status
