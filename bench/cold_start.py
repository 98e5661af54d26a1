"""Cold-start import cost of each Lambda handler in template.yaml.

Each handler is imported in a fresh interpreter (as a new Lambda container would), N times, and
the median import time is printed next to a bare interpreter's. Run: `make bench`.
"""

import statistics
import subprocess
import sys
from pathlib import Path

from local.template import FunctionSpec, load_template

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5
PROBE = """
import sys, time
sys.path[:0] = [{layer!r}, {code!r}]
started = time.perf_counter()
import importlib.util
spec = importlib.util.spec_from_file_location("handler", {module!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print((time.perf_counter() - started) * 1000)
"""
ENV = {
    "POWERTOOLS_SERVICE_NAME": "bench",
    "POWERTOOLS_METRICS_NAMESPACE": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "PATH": "/usr/bin:/bin",
}


def module_file_for(function: FunctionSpec) -> Path:
    module, _ = function.module_and_attribute
    return function.code_uri.joinpath(*module.split(".")).with_suffix(".py")


def median_import_ms(module: Path, code: Path) -> float:
    layer = str(ROOT / "layers" / "qpay_common")
    script = PROBE.format(layer=layer, code=str(code), module=str(module))
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=ENV
            ).stdout
        )
        for _ in range(RUNS)
    ]
    return statistics.median(samples)


def main() -> int:
    template = load_template(ROOT / "template.yaml")
    print(f"median of {RUNS} fresh interpreters, import of the handler module only (ms)")
    for _, function in sorted(template.functions.items()):
        milliseconds = median_import_ms(module_file_for(function), function.code_uri)
        print(f"  {function.logical_id:24s} {milliseconds:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
