"""cffi build script: the binding in API mode, linking libsmtpstate.so."""

import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent

COLLECTOR = (HERE / "_collector.c").read_text()
RECORDS = COLLECTOR.split("/* cdef-begin */")[1].split("/* cdef-end */")[0]

ffibuilder = FFI()
ffibuilder.cdef((HERE / "_declarations.h").read_text() + RECORDS)
ffibuilder.set_source(
    "smtpstate._smtpstate_cffi",
    '#include "smtp.h"\n' + COLLECTOR,
    include_dirs=[str(ROOT / "include")],
    libraries=["smtpstate"],
    extra_compile_args=["-std=c11"],
    extra_link_args=["-Wl,-rpath,$ORIGIN"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
