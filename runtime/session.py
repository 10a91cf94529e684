"""ONNX Runtime session creation: device choice, threads, graph optimisation, checks."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from enum import Enum
from pathlib import Path

import onnxruntime as ort

from bilstm.core.errors import DeviceError, InputError, ModelLoadError
from bilstm.runtime.model_guard import ModelSummary, inspect_model

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# onnxruntime-gpu replaces the CPU wheel (both provide the `onnxruntime` module); 1.21 is the
# first with `onnxruntime.preload_dlls`, the extras bring CUDA and cuDNN as pip packages.
GPU_INSTALL = "pip install 'onnxruntime-gpu[cuda,cudnn]>=1.21'"
ORT_FORMAT_ID = b"ORTM"
"""The flatbuffer file identifier of ONNX Runtime's ORT format (bytes 4-8 of a `.ort` file)."""


class Device(str, Enum):
    """Where to run: `auto` prefers CUDA and falls back to CPU (with a warning)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Optimization(str, Enum):
    """ONNX Runtime graph optimisation level."""

    none = "none"
    basic = "basic"
    extended = "extended"
    all = "all"


def parse_device(value: Device | str) -> Device:
    """`value` as a `Device`; `DeviceError` naming the choices for anything else."""
    try:
        return Device(value)
    except ValueError:
        choices = "|".join(d.value for d in Device)
        raise DeviceError(f"device must be one of {choices}, got {value!r}") from None


def parse_optimization(value: Optimization | str) -> Optimization:
    """`value` as an `Optimization`; `InputError` naming the choices for anything else."""
    try:
        return Optimization(value)
    except ValueError:
        choices = "|".join(o.value for o in Optimization)
        raise InputError(f"optimization must be one of {choices}, got {value!r}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_LEVELS = {
    Optimization.none: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    Optimization.basic: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    Optimization.extended: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    Optimization.all: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def is_ort_format(path: Path) -> bool:
    """True when `path` is an ORT-format model (`bilstm convert --ort`), by its identifier."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:] == ORT_FORMAT_ID


def check_model_file(path: Path) -> ModelSummary:
    """Refuse paths that cannot be a model before ONNX Runtime sees them.

    `inspect_model` then walks the file's protobuf structure and refuses one that is not a
    ModelProto, reads external data from outside its folder, or uses unknown operator domains.
    An ORT-format file is a flatbuffer, not a protobuf: ONNX Runtime verifies its structure
    when it loads it (an ORT file has no external data), and it runs only on the CPU here
    (`create_session`), so the walk's summary stays empty for it.
    """
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, expected an .onnx or .ort file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: the file is empty, expected an ONNX model")
    if is_ort_format(path):
        return ModelSummary()
    return inspect_model(path)


def _installed(dist: str) -> bool:
    import importlib.metadata  # only for diagnostics: its import adds to every cold start

    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _cuda_unavailable_reason() -> str:
    if _installed("onnxruntime-gpu") and _installed("onnxruntime"):
        return (
            "both 'onnxruntime' and 'onnxruntime-gpu' are installed and the CPU wheel shadows the "
            "GPU one; run: pip uninstall -y onnxruntime onnxruntime-gpu && "
            f"{GPU_INSTALL}"
        )
    if not _installed("onnxruntime-gpu"):
        return (
            "the installed ONNX Runtime has no CUDA support; install the GPU wheel instead of the "
            f"CPU one: pip uninstall -y onnxruntime && {GPU_INSTALL}"
        )
    return f"ONNX Runtime offers only {ort.get_available_providers()}"


@functools.cache  # once per process: the libraries stay loaded
def _preload_cuda_libraries() -> str:
    """Load CUDA/cuDNN from the `nvidia-*` pip packages if they are there; returns what
    ONNX Runtime reported while trying ("" when all went well).

    `pip install onnxruntime-gpu[cuda,cudnn]` puts the libraries in site-packages, where the
    dynamic loader does not look; without this the CUDA provider fails to start unless
    LD_LIBRARY_PATH names them (or torch was imported first). Libraries the loader already
    finds are used as they are; a failure here is left for the provider check to report.
    """
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None:
        return ""
    printed = io.StringIO()  # it prints its diagnostics; they are kept for --debug and errors
    try:
        with contextlib.redirect_stdout(printed):
            preload()
    except (OSError, RuntimeError, ValueError) as exc:  # the provider check reports it
        printed.write(f"onnxruntime.preload_dlls failed: {exc}\n")
    text = " ".join(printed.getvalue().split())
    if text:
        log.debug("onnxruntime.preload_dlls: %s", text)
    return text


def create_session(
    path: Path,
    device: Device = Device.auto,
    device_id: int = 0,
    threads: int | None = None,
    optimization: Optimization = Optimization.all,
    optimized_model_path: Path | None = None,
    profile_prefix: str | None = None,
    tf32: bool = False,
    checked: ModelSummary | None = None,
) -> ort.InferenceSession:
    """Open `path` in ONNX Runtime on the requested device and check what it really got.

    `threads` sets the intra-op thread count (None: ONNX Runtime's default, one per physical
    core). `optimized_model_path` saves the optimised graph there for inspection or reuse.
    `tf32` lets CUDA run fp32 products in TF32. ONNX Runtime's own default is on, which moves
    logits visibly away from PyTorch's fp32 (figures in benchmarks/RESULTS.md, GPU section),
    so here it is off unless asked for.
    `checked` is `check_model_file(path)`'s result when the caller has already run it.
    """
    device = parse_device(device)
    optimization = parse_optimization(optimization)
    if not _is_int(device_id) or device_id < 0:
        raise DeviceError(f"device_id must be an integer >= 0, got {device_id!r}")
    if threads is not None and (not _is_int(threads) or threads < 1):
        raise DeviceError(f"threads must be an integer >= 1, got {threads!r}")
    if checked is None:
        checked = check_model_file(path)
    ort_format = is_ort_format(path)
    opts = _session_options(optimization, threads, optimized_model_path, profile_prefix)
    if ort_format:  # whatever the file is called (ONNX Runtime goes by the .ort suffix)
        opts.add_session_config_entry("session.load_model_format", "ORT")
        device = _ort_models_on_cpu(path, device)
    device = _text_models_on_cpu(path, device, checked)
    available = ort.get_available_providers()
    want_cuda = device is Device.cuda or (device is Device.auto and CUDA in available)
    if device is Device.cuda and CUDA not in available:
        raise DeviceError(f"--device cuda cannot be used: {_cuda_unavailable_reason()}")
    providers: list[str | tuple[str, dict[str, object]]] = [CPU]
    preload_report = ""
    if want_cuda:
        preload_report = _preload_cuda_libraries()
        providers = [(CUDA, {"device_id": device_id, "use_tf32": int(tf32)}), CPU]
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises several unrelated exception types for bad files
        raise ModelLoadError(
            f"{path}: ONNX Runtime cannot load it as a model: {_short(exc)}"
        ) from exc
    _check_cuda_started(session, device, want_cuda, preload_report)
    return session


def _session_options(
    optimization: Optimization,
    threads: int | None,
    optimized_model_path: Path | None,
    profile_prefix: str | None,
) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = _LEVELS[optimization]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = threads
    if optimized_model_path is not None:
        opts.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def _ort_models_on_cpu(path: Path, device: Device) -> Device:
    """An ORT-format file runs on the CPU: `bilstm convert --ort` optimises it for the CPU
    provider (as ONNX Runtime's converter does for mobile and minimal builds), and the runtime
    checks of vocabulary against table size that CUDA needs are made on `.onnx` files only."""
    if device is Device.cuda:
        raise DeviceError(
            f"--device cuda cannot run {path}: ORT-format files are converted for the CPU "
            "(ONNX Runtime Mobile and minimal builds); run the .onnx model on CUDA"
        )
    if device is Device.auto and CUDA in ort.get_available_providers():
        log.warning("device auto: %s is an ORT-format file (CPU only); running on CPU", path)
    return Device.cpu


def _text_models_on_cpu(path: Path, device: Device, checked: ModelSummary) -> Device:
    """A text-in (--with-tokenizer) graph runs on the CPU: ORT cannot copy string tensors to
    the GPU, so such a session fails to build with the CUDA provider."""
    if not checked.string_inputs or device is Device.cpu:
        return device
    reason = (
        "the model takes raw text (exported with --with-tokenizer) and ONNX Runtime cannot "
        "move its string tensors to the GPU"
    )
    if device is Device.cuda:
        raise DeviceError(
            f"--device cuda cannot run {path}: {reason}; run it with --device cpu, or "
            "export the model without --with-tokenizer for CUDA"
        )
    if CUDA in ort.get_available_providers():
        log.warning("device auto: %s; running on CPU", reason)
    return Device.cpu


def _check_cuda_started(
    session: ort.InferenceSession, device: Device, want_cuda: bool, preload_report: str
) -> None:
    """ORT falls back to the CPU with only a log line when the CUDA libraries fail to load:
    refuse that for --device cuda, say it for auto."""
    got = session.get_providers()
    if want_cuda and CUDA not in got:
        if device is Device.cuda:
            loader = (
                f"; loading the CUDA libraries said: {preload_report[:300]}"
                if preload_report
                else ""
            )
            raise DeviceError(
                "--device cuda was requested but ONNX Runtime could not start CUDA (CUDA or cuDNN "
                "libraries not loadable, or no GPU visible); check `nvidia-smi` and that the CUDA "
                f"and cuDNN versions match your onnxruntime-gpu{loader}"
            )
        log.warning("device auto: CUDA could not be started, running on CPU")
    elif device is Device.auto and not want_cuda:
        log.info("device auto: no CUDA provider in this ONNX Runtime, running on CPU")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
