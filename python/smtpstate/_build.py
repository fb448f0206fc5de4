"""cffi build script: the binding in API mode, linking libsmtpstate.so."""

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent

COLLECTOR = (HERE / "_collector.c").read_text()
STATE_SETUP = (HERE / "_state_setup.c").read_text()
RECORDS = COLLECTOR.split("/* cdef-begin */")[1].split("/* cdef-end */")[0]

# The binding's own C (the collector, the setup entry) is held to the
# core's warnings; cffi's generated code is clean under them too.
WARNINGS = ["-Wall", "-Wextra"]
if os.environ.get("SMTPSTATE_WERROR") == "1":
    WARNINGS.append("-Werror")
SANITIZE = os.environ.get("SMTPSTATE_SANITIZE", "")
SAN_FLAGS = [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer"] if SANITIZE else []

ffibuilder = FFI()
ffibuilder.cdef((HERE / "_declarations.h").read_text() + RECORDS)
ffibuilder.set_source(
    "smtpstate._smtpstate_cffi",
    '#include "smtp.h"\n' + COLLECTOR + STATE_SETUP,
    include_dirs=[str(ROOT / "include")],
    libraries=["smtpstate"],
    extra_compile_args=["-std=c11", *WARNINGS, *SAN_FLAGS],
    extra_link_args=["-Wl,-rpath,$ORIGIN", *SAN_FLAGS],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
