# agent.cmake: the workloads of the agent benchmarks (agent_vs_perf.sh,
# agent_overhead.sh, agent_soak.sh). Included from tests/bench/CMakeLists.txt.
# They are built like the burner: frame pointers (user stacks unwind), -O1
# with no inlining (the hot functions keep their names), no sanitizers.
set(SH_AGENT_BENCH_DIR ${CMAKE_CURRENT_LIST_DIR})

function(sh_agent_bench_workload name)
  add_executable(${name} ${SH_AGENT_BENCH_DIR}/${name}.c)
  target_compile_options(${name} PRIVATE -O1 -g -fno-omit-frame-pointer
    -mno-omit-leaf-frame-pointer -fno-inline-functions -fno-sanitize=all)
  target_link_options(${name} PRIVATE -fno-sanitize=all)
  target_link_libraries(${name} PRIVATE sh_warnings)
endfunction()

sh_agent_bench_workload(mixload)
sh_agent_bench_workload(loops)
sh_agent_bench_workload(forker)
