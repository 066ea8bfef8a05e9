# BpfSkeleton.cmake: bpf_skeleton(NAME) compiles bpf/NAME.bpf.c with clang
# -target bpf (CO-RE, against the committed bpf/vmlinux/vmlinux.h), then runs
# `bpftool gen skeleton`, yielding an INTERFACE target NAME_skel whose include
# directory holds NAME.skel.h.
function(bpf_skeleton name)
  set(src "${PROJECT_SOURCE_DIR}/bpf/${name}.bpf.c")
  set(obj "${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o")
  set(skel_dir "${CMAKE_CURRENT_BINARY_DIR}/skel")
  set(skel "${skel_dir}/${name}.skel.h")
  string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" arch)
  if(arch MATCHES "x86_64|amd64")
    set(target_arch x86)
  elseif(arch MATCHES "aarch64|arm64")
    set(target_arch arm64)
  else()
    set(target_arch ${arch})
  endif()
  file(GLOB bpf_headers "${PROJECT_SOURCE_DIR}/bpf/*.h")
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${target_arch}
            -I${PROJECT_SOURCE_DIR}/bpf -I${PROJECT_SOURCE_DIR}/bpf/vmlinux
            -idirafter /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}
            -Wall -Wno-unused-function -c ${src} -o ${obj}
    DEPENDS ${src} ${bpf_headers} ${PROJECT_SOURCE_DIR}/bpf/vmlinux/vmlinux.h
    COMMENT "clang -target bpf ${name}.bpf.c")
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${skel_dir}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "bpftool gen skeleton ${name}")
  add_custom_target(${name}_skel_gen ALL DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${skel_dir} ${PROJECT_SOURCE_DIR}/bpf)
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
