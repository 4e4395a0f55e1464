"""Which CPU features the installed llama.cpp build uses, checked against this CPU, for doctor.

The build is probed in a child process with a time limit: it imports llama_cpp, reports the
build's ``llama_print_system_info()`` and GPU support, then loads the configured model as the
planner would and evaluates three tokens. A build that dies on this CPU (SIGILL on an
instruction the CPU lacks, SIGSEGV in ggml's AMX kernels, llama.cpp#20824) takes only the probe
down, and doctor says which and how to rebuild.

    python -m bot.llm.build_info MODEL.gguf '{"n_ctx": 256, "n_gpu_layers": 0}'
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.adapter import Finding

# llama.cpp's name for a CPU feature -> the flag in /proc/cpuinfo
CPU_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
REINSTALL = "pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36"
PORTABLE = (
    f'make llama LLAMA_BUILD=portable (or CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON '
    f'-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" {REINSTALL})'
)


@dataclass
class BuildReport:
    """What the probe found: ``crash`` says how it died, ``error`` what it could not load."""

    system_info: str = ""
    gpu_offload: bool = False
    model_ran: bool = False
    crash: str | None = None
    error: str | None = None
    features: dict[str, str] = field(default_factory=dict)

    @property
    def used(self) -> list[str]:
        return [name for name, value in self.features.items() if value == "1"]


def parse_features(system_info: str) -> dict[str, str]:
    """The CPU backend's part of ``llama_print_system_info()``: ``CPU : SSE3 = 1 | AVX = 1 |``
    (other backends, ``CUDA : ARCHS = 890 | ...``, may come first)."""
    features: dict[str, str] = {}
    backend = ""
    for item in system_info.split("|"):
        item = item.strip()
        if " : " in item:
            backend, item = (part.strip() for part in item.split(" : ", 1))
        if backend == "CPU" and "=" in item:
            key, value = (part.strip() for part in item.split("=", 1))
            features[key] = value
    return features


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """This CPU's feature flags (None where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def probe(model: Path, llama_kwargs: dict[str, Any], timeout: float) -> BuildReport:
    """Run the probe in a child process."""
    command = [sys.executable, "-m", "bot.llm.build_info", str(model), json.dumps(llama_kwargs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        report = _read(exc.stdout or "")
        report.crash = f"did not finish within {timeout:g}s"
        return report
    report = _read(done.stdout)
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        stage = "running the model" if report.system_info else "importing llama_cpp"
        report.crash = f"{name} while {stage}"
    elif done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        report.error = lines[-1]
    return report


def _read(stdout: str | bytes) -> BuildReport:
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", errors="replace")
    report = BuildReport()
    for line in stdout.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            report.system_info = data["system_info"]
            report.gpu_offload = data["gpu_offload"]
            report.features = parse_features(report.system_info)
        elif line == "model ran":
            report.model_ran = True
    return report


def findings(report: BuildReport, flags: set[str] | None, plans_gpu: bool) -> list[Finding]:
    """Doctor's lines about the build."""
    out: list[Finding] = []
    used = report.used
    if report.system_info:
        gpu = "GPU offload yes" if report.gpu_offload else "no GPU offload"
        out.append(Finding("ok", "llama.cpp build", f"{' '.join(used) or 'none'}; {gpu}"))
    if report.crash is not None:
        out.append(
            Finding(
                "fail",
                f"llama.cpp build: the probe died ({report.crash})",
                f"this build cannot run the model on this machine; rebuild it portably: "
                f"{PORTABLE}. The bot keeps running (the model has a process of its own) "
                "but cannot answer",
            )
        )
    if report.error is not None:
        out.append(
            Finding(
                "fail",
                "the model does not load",
                f"{report.error} (llama-cpp-python loading llm.model_path as planned)",
            )
        )
    if report.features.get("AMX_INT8") == "1":
        have = "has" if flags and "amx_int8" in flags else "lacks"
        out.append(
            Finding(
                "fail",
                f"llama.cpp build uses AMX (this CPU {have} it)",
                "ggml's AMX kernels crash (llama.cpp#20824): rebuild without them: " + PORTABLE,
            )
        )
    if flags is not None:
        missing = [
            name
            for name in used
            if name in CPU_FLAGS and name != "AMX_INT8" and CPU_FLAGS[name] not in flags
        ]
        if missing:
            out.append(
                Finding(
                    "fail",
                    f"llama.cpp build uses {', '.join(missing)}, which this CPU lacks",
                    "it will die of SIGILL; rebuild it for this machine: " + PORTABLE,
                )
            )
        unused = [
            name
            for name, flag in CPU_FLAGS.items()
            if name.startswith("AVX512") and flag in flags and name not in used
        ]
        if unused and not report.crash:
            out.append(
                Finding(
                    "ok",
                    "CPU features the portable build leaves unused",
                    f"{', '.join(unused)}: a native build measured 0-12% faster on such a CPU "
                    "(README, 'llama.cpp builds'): make llama LLAMA_BUILD=native",
                )
            )
    if plans_gpu and report.system_info and not report.gpu_offload:
        out.append(
            Finding(
                "warn",
                "GPU offload",
                "the tier plans GPU layers but this llama-cpp-python has no GPU support: "
                f"make llama LLAMA_BUILD=cuda (CMAKE_ARGS=-DGGML_CUDA=on {REINSTALL}), "
                "or set llm.tier: cpu",
            )
        )
    return out


def _main(model: str, kwargs: str) -> None:
    import llama_cpp

    info = {
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace"),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }
    print(json.dumps(info), flush=True)
    llm = llama_cpp.Llama(model_path=model, verbose=False, **json.loads(kwargs))
    llm.eval(llm.tokenize(b"Hello, world", add_bos=True)[:3])
    print("model ran", flush=True)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
