import numpy as np
import pytest
import torch

from medaudit.device import resolve_device
from medaudit.errors import MedauditError
from medaudit.models.checkpoint import load_checkpoint
from medaudit.predict import predict_cached, run_inference
from tests.conftest import ArraySplit


def _manual_probs(loaded, split):
    x = loaded.recipe.batch_from_array(split.array)
    with torch.no_grad():
        return torch.softmax(loaded.model.eval()(x), 1).numpy()


def test_inference_matches_plain_forward(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    p = run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem",
                      batch_size=7, device="cpu")
    assert np.allclose(p.probs, _manual_probs(loaded, array_split), atol=1e-5)
    assert p.sample_ids.tolist() == array_split.sample_ids
    assert p.provenance["checkpoint_sha256"] == loaded.sha256 and p.provenance["device"] == "cpu"


def test_caller_model_state_restored(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    loaded.model.train()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem", device="cpu")
    assert loaded.model.training
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats untouched: eval mode during inference


def test_cache_hit_and_invalidation(tiny_checkpoint, array_split, tmp_path, monkeypatch):
    loaded = load_checkpoint(tiny_checkpoint)
    calls = []
    import medaudit.predict as pr

    orig = pr.run_inference
    monkeypatch.setattr(pr, "run_inference", lambda *a, **k: calls.append(1) or orig(*a, **k))
    p1, c1 = predict_cached(loaded, array_split, split_name="test", dataset_spec="mem", cache_dir=tmp_path)
    p2, c2 = predict_cached(loaded, array_split, split_name="test", dataset_spec="mem", cache_dir=tmp_path)
    assert (c1, c2) == (False, True) and len(calls) == 1
    assert np.array_equal(p1.probs, p2.probs)
    changed = array_split.array.copy()
    changed[3, 0, 0] ^= 1  # one pixel of one image
    _, c3 = predict_cached(loaded, ArraySplit(changed, array_split.labels), split_name="test", dataset_spec="mem",
                           cache_dir=tmp_path)
    assert c3 is False and len(calls) == 2
    _, c4 = predict_cached(loaded, array_split, split_name="test", dataset_spec="mem", cache_dir=tmp_path,
                           use_cache=False)
    assert c4 is False and len(calls) == 3


def test_nan_outputs_are_named(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        loaded.model.fc.bias[0] = float("nan")
    with pytest.raises(MedauditError, match="test/0"):
        run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem")


def test_labels_beyond_head_are_an_error(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    split = ArraySplit(np.zeros((2, 16, 16), np.uint8), np.array([0, 5]))
    with pytest.raises(MedauditError, match="3 classes"):
        predict_cached(loaded, split, split_name="test", dataset_spec="mem")


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(MedauditError, match="no CUDA"):
            resolve_device("cuda")


def test_mixed_train_eval_flags_restored_per_module(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    loaded.model.eval()
    loaded.model.fc.train()  # e.g. a head being fine-tuned while the backbone is frozen
    run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem", device="cpu")
    assert loaded.model.fc.training and not loaded.model.training and not loaded.model.layer1.training


def test_precision_is_part_of_the_cache_key(monkeypatch):
    from medaudit.predict import cache_key, inference_precision

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert inference_precision(cuda, True) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert [inference_precision(cuda, True), inference_precision(cuda, False), inference_precision(cpu, True)] == [
        "fp16", "fp32", "fp32"]
    keys = {cache_key("c", "d", "test", {"img_size": 16}, p) for p in ("fp32", "bf16", "fp16")}
    assert len(keys) == 3


def test_out_of_memory_halves_the_batch_and_keeps_every_sample(tiny_checkpoint, array_split):
    """CUDA OOM is simulated on the CPU: a model that refuses batches above 5 images."""
    loaded = load_checkpoint(tiny_checkpoint)
    real = loaded.model.forward
    seen = []

    def forward(x):
        seen.append(x.shape[0])
        if x.shape[0] > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x)

    loaded.model.forward = forward
    p = run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem",
                      batch_size=16, device="cpu")
    del loaded.model.forward
    assert p.provenance["batch_size"] == 4 and seen[:3] == [16, 8, 4]  # 16 -> 8 -> 4, then the rest at 4
    assert p.n_samples == 20 and np.allclose(p.probs, _manual_probs(loaded, array_split), atol=1e-5)


def test_cnn_runs_channels_last_on_cpu_and_the_callers_layout_is_restored(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    seen = []
    hook = loaded.model.conv1.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    p = run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem", device="cpu")
    hook.remove()
    assert seen and all(seen) and p.provenance["channels_last"] is True
    assert loaded.model.layer1[0].conv1.weight.is_contiguous()  # contiguous again for the caller
    assert np.allclose(p.probs, _manual_probs(loaded, array_split), atol=1e-5)


def test_cached_entry_of_another_precision_is_a_miss(tiny_checkpoint, array_split, tmp_path):
    """An entry written before precision was recorded (a CUDA AMP pass under the fp32 key) is not reused."""
    import json

    from medaudit.predictions import arrays_checksum

    loaded = load_checkpoint(tiny_checkpoint)
    p1, hit1 = predict_cached(loaded, array_split, split_name="test", dataset_spec="mem", cache_dir=tmp_path,
                              device="cpu", amp=False)
    (entry,) = tmp_path.glob("*.npz")
    with np.load(entry, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(str(arrays["header"]))
    header["provenance"].pop("precision")
    header["provenance"]["amp"] = True  # what an old CUDA run wrote
    arrays["header"] = np.array(json.dumps(header))
    # A valid checksum of the edited header: the precision guard, not the checksum, must refuse it.
    data = {k: v for k, v in arrays.items() if k not in ("header", "checksum")}
    arrays["checksum"] = np.array(arrays_checksum(str(arrays["header"]), data))
    np.savez(entry, **arrays)
    import warnings

    from medaudit.errors import MedauditWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", MedauditWarning)  # a checksum warning would mean the wrong guard refused it
        _, hit2 = predict_cached(loaded, array_split, split_name="test", dataset_spec="mem", cache_dir=tmp_path,
                                 device="cpu", amp=False)
    _, hit3 = predict_cached(loaded, array_split, split_name="test", dataset_spec="mem", cache_dir=tmp_path,
                             device="cpu", amp=False)
    assert (hit1, hit2, hit3) == (False, False, True)  # re-run once, then the fresh fp32 entry is used


def test_a_callers_channels_last_model_stays_channels_last(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    loaded.model.to(memory_format=torch.channels_last)
    run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem", device="cpu")
    w = loaded.model.layer1[0].conv1.weight  # 64 input channels: NHWC and NCHW differ
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def test_confident_probabilities_keep_their_ranking(tiny_checkpoint, array_split):
    """float32 would round every p(a) here to 1.0 and tie them all; the ranking must survive."""
    from sklearn.metrics import roc_auc_score

    loaded = load_checkpoint(tiny_checkpoint)

    class Confident(torch.nn.Module):
        def forward(self, z):  # class a ahead by 20-21 logits: p(a) = 1 - ~1e-9
            return z / (z.abs().max() + 1e-6) + torch.tensor([20.0, 0.0, 0.0])

    loaded.model.fc = torch.nn.Sequential(loaded.model.fc, Confident())
    with torch.no_grad():
        logits = loaded.model.eval()(loaded.recipe.batch_from_array(array_split.array))
    assert (torch.softmax(logits, 1)[:, 0] == 1.0).all()  # the float32 pitfall is real for this input
    p = run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem", device="cpu")
    assert p.probs.dtype == np.float64 and (p.probs[:, 0] < 1.0).all()
    is_a = array_split.labels == 0
    margin = (logits[:, 0] - torch.logsumexp(logits[:, 1:], 1)).double().numpy()
    assert roc_auc_score(is_a, p.probs[:, 0]) == roc_auc_score(is_a, margin)
    assert len(np.unique(p.probs[:, 0])) == len(np.unique(margin))


def test_format_1_predictions_are_still_read(tmp_path):
    from medaudit.predictions import Predictions

    p = Predictions("m", ["a", "b"], "binary", ["s0", "s1"], np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]))
    path = p.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:
        arrays = dict(f)
    arrays["header"] = np.array(str(arrays["header"]).replace("predictions/2", "predictions/1"))
    arrays["probs"] = arrays["probs"].astype(np.float32)
    np.savez(path, **arrays)
    back = Predictions.load(path)
    assert back.probs.dtype == np.float64 and np.allclose(back.probs, p.probs)


def test_a_subset_of_samples_runs_in_the_order_asked(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    full = run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem",
                         device="cpu")
    part = run_inference(loaded, array_split, split_name="test", split_fingerprint=None, dataset_spec="mem",
                         device="cpu", sample_ids=["test/7", "test/2"], batch_size=1)
    assert part.sample_ids.tolist() == ["test/7", "test/2"]
    assert part.y_true.tolist() == [array_split.labels[7], array_split.labels[2]]
    assert np.allclose(part.probs, full.probs[[7, 2]], atol=1e-6) and part.probs.dtype == np.float64
    with pytest.raises(MedauditError, match=r"1 sample ids are not in the split \(e.g. \['test/99'\]\)") as err:
        run_inference(loaded, array_split, split_name="test", split_fingerprint=None, dataset_spec="mem",
                      sample_ids=["test/1", "test/99"])
    assert err.value.param == "sample_ids"


def test_a_pass_that_fails_half_way_gives_the_model_back_as_it_came(tiny_checkpoint, array_split):
    loaded = load_checkpoint(tiny_checkpoint)
    loaded.model.train()
    loaded.model.fc.eval()
    before = [m.training for m in loaded.model.modules()]
    real, calls = loaded.model.forward, []

    def forward(x):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a failing second batch")
        return real(x)

    loaded.model.forward = forward
    with pytest.raises(RuntimeError, match="second batch"):
        run_inference(loaded, array_split, split_name="test", split_fingerprint="fp", dataset_spec="mem",
                      batch_size=8, device="cpu")
    del loaded.model.forward
    assert [m.training for m in loaded.model.modules()] == before
    assert loaded.model.layer1[0].conv1.weight.is_contiguous()  # channels-last during the pass, undone


def test_device_errors_name_the_value_and_the_parameter():
    with pytest.raises(MedauditError, match="^device 'gpu0' is not a device name") as err:
        resolve_device("gpu0")
    assert err.value.param == "device"
