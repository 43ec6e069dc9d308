# Runs PROGRAM; passes only if it exits 0 and its output matches the regex EXPECTED.
execute_process(COMMAND "${PROGRAM}" OUTPUT_VARIABLE output ERROR_VARIABLE errors
    RESULT_VARIABLE result)
message("${output}${errors}")
if(NOT result EQUAL 0)
    message(FATAL_ERROR "${PROGRAM} exited with ${result}")
endif()
if(NOT output MATCHES "${EXPECTED}")
    message(FATAL_ERROR "${PROGRAM}: output does not match: ${EXPECTED}")
endif()
