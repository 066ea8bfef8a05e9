# ProtobufC.cmake: sh_protobuf_c(TARGET PROTO) compiles PROTO with protoc-c
# into the build tree and makes a static library TARGET from the result.
function(sh_protobuf_c target proto)
  get_filename_component(abs "${proto}" ABSOLUTE)
  get_filename_component(dir "${abs}" DIRECTORY)
  get_filename_component(base "${abs}" NAME_WE)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${base}.pb-c.c" "${CMAKE_CURRENT_BINARY_DIR}/${base}.pb-c.h")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${PROTOC_C} --proto_path=${dir} --c_out=${CMAKE_CURRENT_BINARY_DIR} ${abs}
    DEPENDS ${abs}
    COMMENT "protoc-c ${base}.proto")
  add_library(${target} STATIC ${out})
  target_include_directories(${target} PUBLIC ${CMAKE_CURRENT_BINARY_DIR})
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
