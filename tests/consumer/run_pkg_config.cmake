# Installs ucoro from BUILD_DIR into a scratch prefix, then compiles the consumer (main.cpp)
# with nothing but `pkg-config --cflags --libs ucoro`, as a Makefile would, and runs it.
# Run by ctest as `cmake -P`.
set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
    execute_process(COMMAND ${ARGV} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "failed (${result}): ${ARGV}")
    endif()
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
file(GLOB_RECURSE pc_files "${prefix}/*/pkgconfig/ucoro.pc")
if(NOT pc_files)
    message(FATAL_ERROR "no pkgconfig/ucoro.pc under ${prefix}")
endif()
list(GET pc_files 0 pc_file)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)

set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs ucoro
    OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs ucoro failed (${result})")
endif()
message(STATUS "pkg-config --cflags --libs ucoro: ${flags}")
string(FIND "${flags}" "-I${prefix}/" include_at)
if(include_at EQUAL -1 OR NOT flags MATCHES "-lucoro" OR NOT flags MATCHES "-luring" OR
   NOT flags MATCHES "-lfmt")
    message(FATAL_ERROR "the flags miss the prefix's include directory or a library: ${flags}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
separate_arguments(cxx_flags UNIX_COMMAND "${CXX_FLAGS} ${LINKER_FLAGS}")
run("${CXX_COMPILER}" -std=c++20 ${cxx_flags} "${SOURCE_DIR}/main.cpp" -o "${WORK_DIR}/consumer"
    ${flags})
run("${WORK_DIR}/consumer")
