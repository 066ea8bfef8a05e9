# bpf.cmake: BPF integration tests (label "bpf"): they load and attach the
# sampler for real, so they need root and a kernel with BTF, and exit 77
# (skipped) without them. Included from tests/integration/CMakeLists.txt.
if(TARGET spikehound-agent AND TARGET sampler_skel)
  # The burner must keep frame pointers and a visible hot function; it is
  # built without sanitizers (they would add frames and slow it down).
  add_executable(burner ${CMAKE_CURRENT_LIST_DIR}/burner.c)
  target_compile_options(burner PRIVATE -O1 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -fno-inline-functions
    -fno-sanitize=all)
  target_link_options(burner PRIVATE -fno-sanitize=all)
  target_link_libraries(burner PRIVATE sh_warnings)

  add_test(NAME bpf_record_burner
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/test_record_burner.sh
            $<TARGET_FILE:spikehound-agent> $<TARGET_FILE:burner>)
  set_tests_properties(bpf_record_burner PROPERTIES
    LABELS bpf TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()

# JIT code named from a perf map (/tmp/perf-PID.map), as perf does.
if(TARGET spikehound-agent AND TARGET sampler_skel)
  add_executable(jit_spin ${CMAKE_CURRENT_LIST_DIR}/jit_spin.c)
  target_compile_options(jit_spin PRIVATE -fno-sanitize=all)
  target_link_options(jit_spin PRIVATE -fno-sanitize=all)
  target_link_libraries(jit_spin PRIVATE sh_warnings Threads::Threads)
  add_test(NAME bpf_record_jit
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/test_record_jit.sh
            $<TARGET_FILE:spikehound-agent> $<TARGET_FILE:jit_spin>)
  set_tests_properties(bpf_record_jit PROPERTIES
    LABELS bpf TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()

# The whole pipe: agent (BPF) -> nng -> aggregator -> PostgreSQL -> CLI.
if(TARGET spikehound-agent AND TARGET spikehound-aggregator AND TARGET spikehound AND TARGET burner)
  add_test(NAME e2e_stacks COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_e2e_stacks.sh $<TARGET_FILE:burner>)
  set_tests_properties(e2e_stacks PROPERTIES
    LABELS "e2e;bpf" TIMEOUT 120 SKIP_RETURN_CODE 77 FIXTURES_REQUIRED pg
    ENVIRONMENT "SH_BUILD=${CMAKE_BINARY_DIR};SH_TEST_DSN_FILE=${CMAKE_BINARY_DIR}/pgtest/dsn")
endif()
