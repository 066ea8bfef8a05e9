# EmbedFiles.cmake: sh_embed_sql(TARGET DIR) turns every DIR/NNN_*.sql into a
# C array of {name, text} in a generated source, built into static library
# TARGET, so the binaries carry their migrations (no install path to find).
function(sh_embed_sql target dir)
  file(GLOB sqls "${dir}/[0-9][0-9][0-9]_*.sql")
  list(SORT sqls)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${target}.c")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DDIR=${dir} -P ${PROJECT_SOURCE_DIR}/cmake/EmbedSqlScript.cmake
    DEPENDS ${sqls} ${PROJECT_SOURCE_DIR}/cmake/EmbedSqlScript.cmake
    COMMENT "embedding sql migrations")
  add_library(${target} STATIC ${out})
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
