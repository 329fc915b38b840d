"""Run pytest against a staged dpn_infer (first argument: the folder holding it), e.g. one whose
_engine and _testing are sanitizer builds. An editable install's import hook would otherwise win over
PYTHONPATH, so it is taken out of sys.meta_path here; child processes the tests start see PKG
through PYTHONPATH (set by the caller), which is enough where dpn_infer is installed normally (CI)."""
import sys

pkg = sys.argv[1]
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
sys.path.insert(0, pkg)
import dpn_infer._engine as engine  # noqa: E402
import dpn_infer._testing as testing  # noqa: E402

for mod in (engine, testing):
    if not mod.__file__.startswith(pkg):
        sys.exit(f"staged package not imported: {mod.__file__}")
    print(f"testing {mod.__file__}")
import pytest  # noqa: E402

sys.exit(pytest.main(sys.argv[2:]))
