#!/usr/bin/env bash
# Runs every test ward has; CI runs exactly this (.ci/run).
#
#   scripts/test.sh           the full pass, in order:
#                             1. deps, plain build (build/), `ward check` on every
#                                config in conf/ and deploy/, unit + integration tests,
#                                bench/run --self-test
#                             2. ASan+UBSan build (build-asan/), all tests
#                             3. TSan build (build-tsan/), unit tests and the
#                                integration tests of cross-thread state: workers
#                                (test_multiworker), and what the main thread
#                                changes under them (reload, health checks, DNS)
#                             4. clang libFuzzer build (build-fuzz/), each fuzz_* for
#                                WARD_FUZZ_SECONDS on a copy of tests/fuzz/corpus/<name>/,
#                                one per core at a time
#                             5. clang-format check (scripts/format.sh --check)
#   scripts/test.sh --quick   step 1 only, for local iteration
#
# A failing step does not stop the later ones (except a failed plain build);
# the exit status is non-zero if any step failed. The last line sums the ctest
# results of every step: "N passed, N failed".
# Environment: WARD_FUZZ_SECONDS (default 40), WARD_JOBS (compile jobs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help)
      sed -n '2,22s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *)
      echo "test.sh: unknown option $arg" >&2
      exit 2
      ;;
  esac
done

# 40 s per target, run one per core at a time (step 4): a fuzzer beside
# another makes 20-30% fewer runs on this project's 2-core CI machine, so
# each still gets what 30 s alone gave it.
fuzz_seconds="${WARD_FUZZ_SECONDS:-40}"
passed=0
failed=0
failed_steps=()
timings=()
started=$SECONDS

banner() { printf '\n=== %s\n' "$*"; }
fail_step() {
  failed_steps+=("$1")
  echo "test.sh: FAILED: $1" >&2
}

summary() {
  banner "summary ($(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s)"
  local t
  for t in "${timings[@]}"; do
    echo "  $t"
  done
  if ((${#failed_steps[@]})); then
    echo "failed steps: ${failed_steps[*]}"
  else
    echo "all steps passed"
  fi
  echo "$passed passed, $failed failed"
}

# timed NAME CMD...: runs CMD, records its duration, returns its status.
timed() {
  local name="$1" t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  timings+=("$(printf '%-28s %4ss %s' "$name" $((SECONDS - t0)) "$([[ $rc == 0 ]] && echo ok || echo FAILED)")")
  return "$rc"
}

# run_ctest STEP BUILD_DIR CTEST_ARGS...: runs ctest, adds its counts to the
# totals; the step fails on any failed test or when no test matched.
run_ctest() {
  local step="$1" dir="$2" out rc=0 line
  shift 2
  out="$(mktemp -t ward-ctest.XXXXXX)"
  banner "$step"
  "${ctest_wrap[@]}" ctest --test-dir "$dir" --output-on-failure --no-tests=error "$@" 2>&1 \
    | tee "$out" || rc=$?
  line="$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$out" | tail -n 1 || true)"
  rm -f "$out"
  if [[ "$line" =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    failed=$((failed + BASH_REMATCH[1]))
    passed=$((passed + BASH_REMATCH[2] - BASH_REMATCH[1]))
  fi
  if ((rc != 0)); then
    fail_step "$step"
    return 1
  fi
}

# Sanitizer reports from any process (ward under pytest included) go to files
# here, so a report is never lost in a subprocess's stderr.
san_logs=""
sanitizer_env() {
  local kind="$1" dir="$2"
  san_logs="$root/$dir/sanitizer-logs"
  rm -rf "$san_logs"
  mkdir -p "$san_logs"
  export WARD_SANITIZER="$kind"  # lets tests relax timing or memory bounds
  case "$kind" in
    address,undefined)
      export ASAN_OPTIONS="detect_leaks=1:log_path=$san_logs/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
      export UBSAN_OPTIONS="print_stacktrace=1:log_path=$san_logs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
      ;;
    thread)
      export TSAN_OPTIONS="second_deadlock_stack=1:log_path=$san_logs/tsan${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
      ;;
  esac
}
check_sanitizer_logs() {
  local step="$1" f found=0
  for f in "$san_logs"/*; do
    [[ -s "$f" ]] || continue
    found=1
    echo "--- $f" >&2
    head -n 80 "$f" >&2
  done
  if ((found)); then
    echo "test.sh: sanitizer reports above, kept in ${san_logs#"$root"/}/" >&2
    fail_step "$step"
    return 1
  fi
}
clear_sanitizer_env() {
  unset WARD_SANITIZER ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS
}

ctest_wrap=()

# --- 1. plain build, unit + integration ----------------------------------
banner "deps"
# --bench: wrk, nginx and HAProxy for the benchmark's self-test below.
timed deps "$root/scripts/deps.sh" --bench || { fail_step deps; summary; exit 1; }

banner "build (build/)"
if ! timed "build" "$root/scripts/build.sh"; then
  fail_step build
  summary
  exit 1
fi
# Every shipped config must pass `ward check`: the docs cannot drift from the loader.
check_configs() {
  local f rc=0
  certs/gen-dev-certs.sh >/dev/null  # conf/ward.yaml serves certs/dev.crt
  for f in conf/ward.yaml conf/container.yaml conf/examples/*.yaml deploy/compose/ward.yaml \
    deploy/kubernetes/ward.yaml; do
    [[ -f "$f" ]] || continue
    if USERS_API_KEY=ci-example-key APP_SERVICE_HOST=10.96.0.10 APP_SERVICE_PORT=9000 build/ward check -c "$f" >/dev/null 2>&1; then
      echo "configs: $f ok"
    else
      rc=1
      echo "configs: $f:" >&2
      USERS_API_KEY=ci-example-key APP_SERVICE_HOST=10.96.0.10 APP_SERVICE_PORT=9000 build/ward check -c "$f" >&2 || true
    fi
  done
  return "$rc"
}
banner "configs (ward check)"
timed "configs" check_configs || fail_step configs

timed "unit" run_ctest unit build -L unit -j 2 || true
timed "integration" run_ctest integration build -L integration || true
# bench/run --self-test (issue 5: CI proves the benchmark still works): a
# seconds-long smoke of every proxy config and h1-small; never a speed check.
timed "bench-self-test" run_ctest bench-self-test build -L bench || true

if ((quick)); then
  summary
  ((${#failed_steps[@]} == 0))
  exit
fi

# --- 2. ASan + UBSan: everything ----------------------------------------
banner "build (build-asan/, ASan+UBSan)"
if timed build-asan "$root/scripts/build.sh" --sanitize address,undefined; then
  sanitizer_env address,undefined build-asan
  timed asan-unit run_ctest asan-unit build-asan -L unit -j 2 || true
  timed asan-integration run_ctest asan-integration build-asan -L integration || true
  check_sanitizer_logs asan-reports || true
  clear_sanitizer_env
else
  fail_step build-asan
fi

# --- 3. TSan: unit tests + the multi-worker integration test -------------
banner "build (build-tsan/, TSan)"
if timed build-tsan "$root/scripts/build.sh" --sanitize thread; then
  # TSan's fixed shadow layout breaks on kernels with high ASLR entropy;
  # running without ASLR avoids "unexpected memory mapping" (when allowed).
  if setarch "$(uname -m)" -R true 2>/dev/null; then
    ctest_wrap=(setarch "$(uname -m)" -R)
  fi
  sanitizer_env thread build-tsan
  timed tsan-unit run_ctest tsan-unit build-tsan -L unit -j 2 || true
  # The main thread publishes snapshots, server lists and health verdicts
  # that the workers read while they serve, and a Redis store's names are
  # looked up on threads of their own: those tests too.
  timed tsan-integration run_ctest tsan-integration build-tsan \
    -R '^integration\.test_(multiworker|reload|health_checks|dns_upstreams|rate_limit_redis)$' || true
  check_sanitizer_logs tsan-reports || true
  clear_sanitizer_env
  ctest_wrap=()
else
  fail_step build-tsan
fi

# --- 4. fuzz --------------------------------------------------------------
# fuzz_one NAME: runs fuzz_NAME for $fuzz_seconds on a fresh copy of its seed
# corpus; its output goes to build-fuzz/fuzz_NAME.log.
fuzz_one() {
  local name="$1" bin corpus log dict=()
  bin="$root/build-fuzz/tests/fuzz/fuzz_$name"
  corpus="$root/build-fuzz/corpus-run/$name"  # a copy: new inputs stay out of git
  log="$root/build-fuzz/fuzz_$name.log"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  if [[ -d "tests/fuzz/corpus/$name" ]]; then
    cp -R "tests/fuzz/corpus/$name/." "$corpus/"
  else
    echo "fuzz: warning: no seed corpus tests/fuzz/corpus/$name/" >&2
  fi
  [[ -f "tests/fuzz/$name.dict" ]] && dict=("-dict=tests/fuzz/$name.dict")
  "$bin" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/$name-" "${dict[@]}" "$corpus" \
    >"$log" 2>&1
}
# fuzz_report NAME PID: waits for the fuzzer PID, says how it ended.
fuzz_report() {
  local name="$1" pid="$2" rc=0 log="$root/build-fuzz/fuzz_$1.log"
  wait "$pid" || rc=$?
  if ((rc != 0)); then
    tail -n 60 "$log" >&2
    echo "fuzz_$name: FAILED (exit $rc); log ${log#"$root"/}, inputs in ${art#"$root"/}/" >&2
    return 1
  fi
  echo "fuzz_$name: ok, $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 \
    | sed 's/Done //; s/ second/s/')"
}
# Each fuzzer is one process on one core: as many run at once as there are
# cores, so every target still gets $fuzz_seconds of a core, in less wall time.
run_fuzzers() {
  local names=() src name ok=1 i cores pids=() running=()
  for src in tests/fuzz/*_fuzz.cpp; do
    [[ -e "$src" ]] || continue
    name="$(basename "$src" .cpp)"
    names+=("${name%_fuzz}")
  done
  if ((${#names[@]} == 0)); then
    echo "fuzz: no tests/fuzz/*_fuzz.cpp targets" >&2
    return 1
  fi
  "$root/scripts/build.sh" --fuzz "${names[@]/#/fuzz_}" || return 1
  art="$root/build-fuzz/artifacts"
  mkdir -p "$art"
  cores="$(nproc 2>/dev/null || echo 1)"
  for name in "${names[@]}"; do
    if ((${#running[@]} >= cores)); then  # all run equally long: the oldest ends first
      fuzz_report "${running[0]}" "${pids[0]}" || ok=0
      running=("${running[@]:1}")
      pids=("${pids[@]:1}")
    fi
    fuzz_one "$name" &
    running+=("$name")
    pids+=("$!")
  done
  for i in "${!running[@]}"; do
    fuzz_report "${running[$i]}" "${pids[$i]}" || ok=0
  done
  ((ok))
}
banner "fuzz (build-fuzz/, ${fuzz_seconds}s per target)"
timed "fuzz" run_fuzzers || fail_step fuzz

# --- 5. format ------------------------------------------------------------
banner "clang-format"
timed "format" "$root/scripts/format.sh" --check || fail_step format

summary
((${#failed_steps[@]} == 0))
