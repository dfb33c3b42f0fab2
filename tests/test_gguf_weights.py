"""A GGUF file as a backbone (propulsion/gguf_weights.py): a tiny LLaMA written as GGUF by the test with the gguf
package, converted through the suite's path, gives the logits of the same weights loaded directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from propulsion import backbones, gguf_weights
from propulsion.specs import ModelSpec, UserError
from propulsion.tasks.data import sha256_file
from tests.suite.helpers import records_under, run_cli
from tests.test_reasoning import BOOLQ, FAST, GREEDY

gguf = pytest.importorskip("gguf", reason="the gguf extra (pip install -e '.[gguf]'; dev includes it)")

HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 32, 2
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # SmolLM2's ids 0, 1, 2: unk, bos, eos


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-level alphabet: the 256 characters a byte-level BPE vocabulary starts from."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(byte) if byte in printable else chr(next(extra)) for byte in range(256)]


def _tiny_llama(vocab: int) -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=64,
                                      num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                      max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from their all-ones init, so a misplaced norm tensor shows in the logits
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    return model


def _rope_order(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp keeps q/k rows of each head interleaved (pairs), HF halves: the permutation its converter applies
    and transformers' GGUF loader undoes."""
    pairs = weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
    return pairs.swapaxes(1, 2).reshape(weight.shape)


def write_gguf(model: transformers.LlamaForCausalLM, tokens: list[str], merges: list[str], path) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(64)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in SPECIAL else 1 for token in tokens])  # 3: control, 1: normal
    writer.add_token_merges(merges)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)  # as SmolLM2's GGUF: pad = EOS; the conversion makes it the unk token
    state = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for i in range(LAYERS):
        hf, blk = f"model.layers.{i}.", f"blk.{i}."
        writer.add_tensor(blk + "attn_norm.weight", state[hf + "input_layernorm.weight"])
        writer.add_tensor(blk + "attn_q.weight", _rope_order(state[hf + "self_attn.q_proj.weight"], HEADS))
        writer.add_tensor(blk + "attn_k.weight", _rope_order(state[hf + "self_attn.k_proj.weight"], KV_HEADS))
        writer.add_tensor(blk + "attn_v.weight", state[hf + "self_attn.v_proj.weight"])
        writer.add_tensor(blk + "attn_output.weight", state[hf + "self_attn.o_proj.weight"])
        writer.add_tensor(blk + "ffn_norm.weight", state[hf + "post_attention_layernorm.weight"])
        writer.add_tensor(blk + "ffn_gate.weight", state[hf + "mlp.gate_proj.weight"])
        writer.add_tensor(blk + "ffn_up.weight", state[hf + "mlp.up_proj.weight"])
        writer.add_tensor(blk + "ffn_down.weight", state[hf + "mlp.down_proj.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.add_tensor("output.weight", state["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(the HF model, the .gguf path, the cache folder) of one tiny LLaMA; the first conversion done here."""
    alphabet = _byte_alphabet()
    space = alphabet[ord(" ")]  # Ġ
    tokens = [*SPECIAL, *alphabet, f"{space}t", "he", f"{space}the"]
    merges = [f"{space} t", "h e", f"{space}t he"]
    model = _tiny_llama(len(tokens))
    folder = tmp_path_factory.mktemp("gguf")
    path = folder / "tiny-llama.F32.gguf"
    write_gguf(model, tokens, merges, path)
    return model, path, folder / "cache"


def test_converted_weights_give_the_logits_of_the_same_weights_loaded_directly(tiny_gguf, monkeypatch):
    model, path, cache = tiny_gguf
    monkeypatch.setenv("PROPULSION_CACHE", str(cache))
    spec = ModelSpec(name="tiny-gguf", name_or_path=str(path))
    loaded = backbones.load_model(spec, "causal-lm").eval()
    ids = torch.tensor([[1, 70, 71, 259, 260, 261, 5, 2]])
    with torch.no_grad():
        expected, got = model(ids).logits, loaded(ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # the converted folder is an ordinary safetensors checkpoint, no quantisation left in its config
    folder = gguf_weights.cache_root() / gguf_weights.converted(str(path)).name
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["pad_token_id"] == 0
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))


def test_tokenizer_pads_with_the_unknown_token_not_eos_as_llm_adapters(tiny_gguf, monkeypatch):
    _, path, cache = tiny_gguf
    monkeypatch.setenv("PROPULSION_CACHE", str(cache))
    tokenizer = backbones.load_tokenizer(ModelSpec(name="tiny-gguf", name_or_path=str(path)), padding_side="left")
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 2, 1)
    assert tokenizer.padding_side == "left"
    assert tokenizer(" the")["input_ids"] == [261]  # the GGUF's merges: " the" is one token


def test_conversion_is_cached_by_sha256_and_recorded_with_both_hashes(tiny_gguf, monkeypatch):
    _, path, cache = tiny_gguf
    monkeypatch.setenv("PROPULSION_CACHE", str(cache))
    from propulsion.tasks.data import sha256_file

    folder = gguf_weights.converted(str(path))
    assert folder == cache / "gguf" / sha256_file(path)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert gguf_weights.converted(str(path)) == folder  # the second call converts nothing
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    record = backbones.provenance(ModelSpec(name="tiny-gguf", name_or_path=str(path)))
    assert record["source"] == "gguf" and record["gguf"]["sha256"] == sha256_file(path)
    assert record["gguf"]["bytes"] == path.stat().st_size
    assert record["converted"]["sha256"]["model.safetensors"] == sha256_file(folder / "model.safetensors")
    manifest = json.loads((folder / gguf_weights.MANIFEST).read_text())
    assert manifest["gguf_sha256"] == sha256_file(path) and manifest["pad_token_id"] == 0


def test_a_missing_gguf_file_is_one_line_naming_it_and_the_fetch(tmp_path):
    missing = str(tmp_path / "nothing.gguf")
    with pytest.raises(UserError, match=r"nothing\.gguf.*no such GGUF file.*make smollm2"):
        backbones.load_model(ModelSpec(name="x", name_or_path=missing), "causal-lm")


def test_a_gguf_file_runs_through_the_entrypoint_as_model_name_or_path(tiny_gguf, tmp_path):
    """model=smollm2-135m points name_or_path at a .gguf *file*: the entrypoint's input check once refused anything
    but a folder, and the first real run stopped there."""
    _, path, cache = tiny_gguf
    data = tmp_path / "data"
    for relative, rows in (("ft-training_set/commonsense_170k.json", [BOOLQ] * 8), ("dataset/boolq/test.json",
                                                                                     [BOOLQ] * 2)):
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        (data / relative).write_text(json.dumps(rows))
    result = run_cli("model=smollm2-135m", f"model.name_or_path={path}", "model.architecture=null",
                     "task=commonsense", f"task.data_dir={data}", "task.options.test_sets=[boolq]",
                     "method=propulsion", *FAST, *GREEDY, "trainer.max_steps=1", "save_adapter=false",
                     f"output_root={tmp_path / 'runs'}", env_extra={"PROPULSION_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = records_under(tmp_path / "runs")
    assert record["status"] == "completed" and record["train"]["steps"] == 1
    assert record["model_files"]["gguf"]["sha256"] == sha256_file(path)
