"""Builds libsmtpstate.so from csrc/ and the cffi binding that links it.

The core is one shared library installed inside the package, so the
binding, a pure-C embedder and a plugin all share one state table.
SMTPSTATE_WERROR=1 turns warnings in csrc/ into errors (development, CI).
"""

import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CORE = "smtpstate.libsmtpstate"
WARNINGS = ["-Wall", "-Wextra"]
if os.environ.get("SMTPSTATE_WERROR") == "1":
    WARNINGS.append("-Werror")
# SMTPSTATE_SANITIZE=address,undefined builds the core under sanitizers, for
# running the Python test suite with the runtimes preloaded.
SANITIZE = os.environ.get("SMTPSTATE_SANITIZE", "")
SAN_FLAGS = (
    [f"-fsanitize={SANITIZE}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    if SANITIZE
    else []
)

core = Extension(
    CORE,
    sources=sorted(glob.glob("csrc/*.c")),
    include_dirs=["include", "csrc"],
    define_macros=[("SMTPSTATE_BUILDING_LIBRARY", "1"), ("_GNU_SOURCE", "1")],
    extra_compile_args=["-std=c11", "-fvisibility=hidden", *WARNINGS, *SAN_FLAGS],
    extra_link_args=["-lpthread", "-ldl", *SAN_FLAGS],
    depends=glob.glob("include/*.h") + glob.glob("csrc/*.h"),
)


class BuildCoreFirst(build_ext):
    """Builds the core library before, and as a plain .so beside, the binding."""

    def get_ext_filename(self, fullname):
        parts = fullname.split(".")
        if parts[-1] == CORE.split(".")[-1]:
            return os.path.join(*parts[:-1], "libsmtpstate.so")
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext):
        if ext.name == CORE:
            return []
        return super().get_export_symbols(ext)

    def finalize_options(self):
        super().finalize_options()
        # Flags come from the environment (warnings as errors, sanitizers),
        # which setuptools' up-to-date check does not see: always rebuild.
        self.force = True

    def build_extensions(self):
        self.extensions.sort(key=lambda ext: ext.name != CORE)
        core_dir = os.path.dirname(self.get_ext_fullpath(CORE))
        for ext in self.extensions:
            if ext.name != CORE:
                ext.library_dirs.append(core_dir)
        super().build_extensions()


setup(
    ext_modules=[core],
    cffi_modules=["python/smtpstate/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildCoreFirst},
)
