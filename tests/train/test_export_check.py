"""Bounded-memory export validation: its verdicts on damaged exports, and its peak memory against the model's size.

(A reply that never ends: tests/train/test_export.py, through export_model.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from med42_train.train.export import INDEX_NAME, export_model
from med42_train.train.export_check import ExportError, tensor_record, validate_export
from tests.conftest import PROJECT_ROOT
from tests.train.export_worker import PROMPT, demo_tokenizer, model_that_stops


def _export(out_dir: Path, max_shard_bytes: int, **sizes) -> tuple[Path, dict, dict]:
    """An export of a model that stops, with what was written per shard computed from the model's own tensors."""
    tokenizer = demo_tokenizer()
    model = model_that_stops(tokenizer, **sizes)
    report = export_model(model, tokenizer, out_dir / "model", PROMPT, max_shard_bytes)
    state = model.state_dict()
    weight_map = json.loads((out_dir / "model" / INDEX_NAME).read_text())["weight_map"]
    written: dict[str, dict] = {}
    for name, file_name in weight_map.items():
        written.setdefault(file_name, {})[name] = tensor_record(state[name])
    expected = {"num_params": report["num_params"], "dtype": report["dtype"]}
    return out_dir / "model", written, expected


@pytest.fixture
def small_export(tmp_path):
    return _export(tmp_path, max_shard_bytes=80_000)


def _rewrite_shard(export_dir: Path, file_name: str, change) -> str:
    """Rewrite one shard with `change(tensors)` applied; returns the name of a tensor it holds."""
    with safe_open(str(export_dir / file_name), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    name = sorted(tensors)[0]
    change(tensors, name)
    save_file(tensors, str(export_dir / file_name), metadata={"format": "pt"})
    return name


def test_an_untouched_export_passes(small_export):
    export_dir, written, expected = small_export
    assert len(written) >= 3
    report = validate_export(export_dir, PROMPT, expected, written, max_new_tokens=8)
    assert report["stops_on"] == "<|eot_id|>" and report["num_params"] == expected["num_params"]


def test_validation_inside_a_ram_efficient_fsdp_job_still_loads_the_offloaded_layers(small_export, tmp_path,
                                                                                     monkeypatch):
    """What a training job with fsdp.cpu_ram_efficient_loading looks like to transformers: a process group and
    accelerate's two variables. transformers then skips dispatching offloaded layers (they stayed on meta)."""
    export_dir, written, expected = small_export
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        report = validate_export(export_dir, PROMPT, expected, written, max_new_tokens=8)
    finally:
        torch.distributed.destroy_process_group()
    assert report["stops_on"] == "<|eot_id|>"
    assert os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"  # the job's setting is left as it was


def test_a_tampered_shard_is_refused_naming_the_tensor(small_export):
    export_dir, written, expected = small_export
    file_name = sorted(written)[1]
    path = export_dir / file_name
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one byte of the last tensor's data; the header still parses
    path.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=rf"{file_name}: tensor \S+ reads back as sha256"):
        validate_export(export_dir, PROMPT, expected, written, max_new_tokens=8)


def test_a_missing_tensor_is_refused(small_export):
    export_dir, written, expected = small_export
    file_name = sorted(written)[0]
    removed = _rewrite_shard(export_dir, file_name, lambda tensors, name: tensors.pop(name))
    with pytest.raises(ExportError, match=rf"missing tensors \['{removed}'\]"):
        validate_export(export_dir, PROMPT, expected, written, max_new_tokens=8)


def test_a_tensor_in_the_wrong_dtype_is_refused(small_export):
    export_dir, written, expected = small_export
    file_name = sorted(written)[0]

    def to_half(tensors, name):
        tensors[name] = tensors[name].to(torch.float16)

    retyped = _rewrite_shard(export_dir, file_name, to_half)
    message = rf"tensor {retyped} reads back as dtype torch.float16 \(written torch.float32\)"
    with pytest.raises(ExportError, match=message):
        validate_export(export_dir, PROMPT, expected, written, max_new_tokens=8)


def test_names_the_loader_does_not_find_are_refused(small_export):
    """Shards that hold exactly what was written, under names transformers does not know (e.g. `_orig_mod.`)."""
    export_dir, written, expected = small_export
    file_name = sorted(written)[0]

    def rename(tensors, name):
        tensors[f"_orig_mod.{name}"] = tensors.pop(name)

    renamed = _rewrite_shard(export_dir, file_name, rename)
    written[file_name][f"_orig_mod.{renamed}"] = written[file_name].pop(renamed)
    index_path = export_dir / INDEX_NAME
    index = json.loads(index_path.read_text())
    index["weight_map"][f"_orig_mod.{renamed}"] = index["weight_map"].pop(renamed)
    index_path.write_text(json.dumps(index))
    with pytest.raises(ExportError, match="the saved names do not match the model's"):
        validate_export(export_dir, PROMPT, expected, written, max_new_tokens=8)


PEAK_RSS_OF_VALIDATION = """
import json, re, sys
from pathlib import Path
from med42_train.train.export_check import generate_reply, validate_export

def hwm_mib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

def validate(spec, mode):
    if mode == "bounded":
        validate_export(Path(spec["dir"]), spec["prompt"], spec["expected"], spec["written"], 8)
    else:  # what validation did before: the whole export reloaded into memory
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained(spec["dir"], dtype="auto", device_map="cpu")
        generate_reply(model, AutoTokenizer.from_pretrained(spec["dir"]), spec["prompt"], 8)

small, big, mode = json.loads(Path(sys.argv[1]).read_text()), json.loads(Path(sys.argv[2]).read_text()), sys.argv[3]
validate(small, mode)  # imports and one-time allocations, so the measured growth is the big model's
Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
before = hwm_mib()
validate(big, mode)
print(hwm_mib() - before)
"""


def _spec(path: Path, export_dir: Path, written: dict, expected: dict) -> Path:
    path.write_text(json.dumps({"dir": str(export_dir), "written": written, "expected": expected, "prompt": PROMPT}))
    return path


def test_validation_peak_memory_is_a_fraction_of_the_model(tmp_path):
    # ~121 MiB of fp32 weights in 4 MiB shards; a tiny export first absorbs the fixed costs.
    big = _export(tmp_path / "big", max_shard_bytes=4 << 20, hidden_size=512, intermediate_size=2048,
                  num_hidden_layers=8)
    small = _export(tmp_path / "small", max_shard_bytes=80_000)
    model_mib = sum(p.stat().st_size for p in big[0].glob("*.safetensors")) / 2**20
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_OF_VALIDATION, str(_spec(tmp_path / "s.json", *small)),
                             str(_spec(tmp_path / "b.json", *big)), "bounded"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    peak_growth_mib = float(result.stdout.split()[-1])
    print(f"validation peak RSS growth {peak_growth_mib:.1f} MiB for a {model_mib:.1f} MiB export")
    assert model_mib > 100 and peak_growth_mib < model_mib / 4
