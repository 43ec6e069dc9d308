# Runs 12_copy_file (PROGRAM) in WORK_DIR: copies of a file of a few MiB with an odd size and
# a period that no block size divides, compared byte for byte, and its answers to bad input.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# 4099 random characters (a prime length) repeated, plus 7 bytes: 4,099,007 bytes.
string(RANDOM LENGTH 4099 chunk)
string(REPEAT "${chunk}" 1000 content)
file(WRITE "${WORK_DIR}/source" "${content}tail..\n")
file(SIZE "${WORK_DIR}/source" size)
if(NOT size EQUAL 4099007)
    message(FATAL_ERROR "the source has ${size} bytes, not 4099007")
endif()

# Runs the program; fails unless it exits with `code` and its output matches `pattern`.
function(expect code pattern)
    execute_process(COMMAND "${PROGRAM}" ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err
        RESULT_VARIABLE result)
    string(JOIN " " command_line ${ARGN})
    message("$ 12_copy_file ${command_line}\n${out}${err}")
    if(NOT result EQUAL code)
        message(FATAL_ERROR "exited with ${result}, expected ${code}")
    endif()
    if(NOT "${out}${err}" MATCHES "${pattern}")
        message(FATAL_ERROR "output does not match: ${pattern}")
    endif()
endfunction()

function(expect_same a b)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${a}" "${b}" RESULT_VARIABLE differ)
    if(differ)
        message(FATAL_ERROR "${a} and ${b} differ")
    endif()
endfunction()

# The defaults, then many small blocks that straddle the period, with a long old file in the
# way (its tail must go).
expect(0 "copied 4099007 bytes .* in blocks of 65536 bytes, 8 in flight"
    "${WORK_DIR}/source" "${WORK_DIR}/copy")
expect_same("${WORK_DIR}/source" "${WORK_DIR}/copy")
file(WRITE "${WORK_DIR}/copy2" "${content}${content}")
expect(0 "copied 4099007 bytes .* in blocks of 12289 bytes, 3 in flight"
    "${WORK_DIR}/source" "${WORK_DIR}/copy2" --in-flight 3 --block-size 12289)
expect_same("${WORK_DIR}/source" "${WORK_DIR}/copy2")
# More workers than blocks, and an empty file.
file(WRITE "${WORK_DIR}/small" "seven b")
expect(0 "copied 7 bytes" "${WORK_DIR}/small" "${WORK_DIR}/small.copy" --in-flight 16)
expect_same("${WORK_DIR}/small" "${WORK_DIR}/small.copy")
file(WRITE "${WORK_DIR}/empty" "")
expect(0 "copied 0 bytes" "${WORK_DIR}/empty" "${WORK_DIR}/empty.copy")
expect_same("${WORK_DIR}/empty" "${WORK_DIR}/empty.copy")

# Bad input: one line naming the cause, exit 1 (or 2 for the command line), nothing lost.
expect(1 "^12_copy_file: cannot open [^\n]*/missing: No such file or directory\n$"
    "${WORK_DIR}/missing" "${WORK_DIR}/never")
if(EXISTS "${WORK_DIR}/never")
    message(FATAL_ERROR "a failed copy created its destination")
endif()
expect(1 "^12_copy_file: cannot open [^\n]*/no-such-dir/copy: No such file or directory\n$"
    "${WORK_DIR}/source" "${WORK_DIR}/no-such-dir/copy")
expect(1 "^12_copy_file: cannot open [^\n]*: Is a directory\n$" "${WORK_DIR}/source" "${WORK_DIR}")
expect(1 "^12_copy_file: [^\n]* is not a regular file\n$" "${WORK_DIR}" "${WORK_DIR}/copy3")
expect(1 "^12_copy_file: [^\n]*/source and [^\n]*/./source are the same file\n$"
    "${WORK_DIR}/source" "${WORK_DIR}/./source")
file(SIZE "${WORK_DIR}/source" size)
if(NOT size EQUAL 4099007)
    message(FATAL_ERROR "copying the source onto itself changed it: ${size} bytes")
endif()
# A source with bytes past its size (a /proc file says 0): an error, not an empty copy.
expect(1 "^12_copy_file: /proc/self/status has more bytes than the 0 its size said [^\n]*: the copy is incomplete\n$"
    /proc/self/status "${WORK_DIR}/status")
# A destination that cannot seek (here the pipe that stdout is) would get the blocks in the
# order the workers finish: refused before a byte is written.
expect(1 "^12_copy_file: /dev/stdout cannot be written at an offset \\(a pipe, socket or terminal\\)\n$"
    "${WORK_DIR}/source" /dev/stdout)

expect(2 "^12_copy_file: --in-flight wants a whole number from 1 to 1024, not '0'\nusage: "
    "${WORK_DIR}/source" "${WORK_DIR}/copy" --in-flight 0)
expect(2 "^12_copy_file: --block-size wants a whole number from 1 to 67108864, not '4k'\nusage: "
    "${WORK_DIR}/source" "${WORK_DIR}/copy" --block-size 4k)
expect(2 "^12_copy_file: --in-flight times --block-size must be at most 1073741824 bytes\nusage: "
    "${WORK_DIR}/source" "${WORK_DIR}/copy" --in-flight 1024 --block-size 67108864)
expect(2 "^12_copy_file: --in-flight needs a value\nusage: " "${WORK_DIR}/source" "${WORK_DIR}/copy" --in-flight)
expect(2 "^12_copy_file: unknown option '--fast'\nusage: " "${WORK_DIR}/source" "${WORK_DIR}/copy" --fast)
expect(2 "^12_copy_file: expected a source and a destination\nusage: " "${WORK_DIR}/source")
file(REMOVE_RECURSE "${WORK_DIR}")
