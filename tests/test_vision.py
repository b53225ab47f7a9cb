"The vision data loaders, patches, classifiers and <CLS> heat maps, checked on the installed package."

import json, subprocess, sys

import numpy as np
import pytest
import torch

from causal_rn.model import ModelConfig, build_model
from causal_rn.vision import (
    cifar5m_data,
    load_cifar5m,
    load_digits_images,
    minibatches,
    patchify,
    split_indices,
    unpatchify,
)
from causal_rn.vision_experiments import (
    cls_pair_preactivations,
    cls_relation_map,
    heatmaps,
    run_vision,
    vision_run_config,
)

RNG = np.random.default_rng(0)
GOOD_X = RNG.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
GOOD_Y = np.array([0, 9, 3, 3], dtype=np.int16)


def write_part(folder, part=0, **arrays):
    np.savez(folder / f"cifar5m_part{part}.npz", **arrays)


def test_cifar5m_loads_good_parts(tmp_path):
    write_part(tmp_path, 0, X=GOOD_X, Y=GOOD_Y)
    write_part(tmp_path, 2, X=GOOD_X[:1], Y=GOOD_Y[:1])
    X, Y = load_cifar5m(tmp_path, parts=[0, 2])
    assert X.shape == (5, 32, 32, 3) and X.dtype == torch.uint8
    assert Y.dtype == torch.int64 and Y.tolist() == [0, 9, 3, 3, 0]
    assert np.array_equal(X[:4].numpy(), GOOD_X)


@pytest.mark.parametrize(
    "arrays,fragments",
    [
        (dict(X=GOOD_X.transpose(0, 3, 1, 2), Y=GOOD_Y), ["channels first", "transpose(0, 2, 3, 1)"]),
        (dict(X=GOOD_X[:, :, :8], Y=GOOD_Y), ["X has shape (4, 32, 8, 3)", "expected (N, 32, 32, 3)"]),
        (dict(X=GOOD_X.astype(np.float64), Y=GOOD_Y), ["X has dtype float64", "expected uint8"]),
        (dict(X=GOOD_X, Y=GOOD_Y.astype(np.float32)), ["Y has dtype float32", "integer"]),
        (dict(X=GOOD_X, Y=GOOD_Y.reshape(2, 2)), ["Y has shape (2, 2)", "expected (N,)"]),
        (dict(X=GOOD_X, Y=np.array([0, 1, 2, 11])), ["labels range from 0 to 11", "expected 0 to 9"]),
        (dict(X=GOOD_X, Y=GOOD_Y[:3]), ["4 images but Y holds 3 labels"]),
        (dict(images=GOOD_X, Y=GOOD_Y), ["not ['X']", "'X' (images)"]),
        (dict(X=GOOD_X, Y=np.array([0, 1, "a", None], dtype=object)), ["cannot be read", "download it again"]),
    ],
)
def test_cifar5m_rejects_bad_parts(tmp_path, arrays, fragments):
    write_part(tmp_path, 0, **arrays)
    with pytest.raises(ValueError) as e:
        load_cifar5m(tmp_path, [0])
    for fragment in ["cifar5m_part0.npz", *fragments]:
        assert fragment in str(e.value)


def test_cifar5m_rejects_corrupt_and_missing_files(tmp_path):
    (tmp_path / "cifar5m_part0.npz").write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError, match="not an .npz archive.*download it again"):
        load_cifar5m(tmp_path, [0])
    write_part(tmp_path, 0, X=GOOD_X, Y=GOOD_Y)
    data = (tmp_path / "cifar5m_part0.npz").read_bytes()
    (tmp_path / "cifar5m_part0.npz").write_bytes(data[:-200])  # truncated download
    with pytest.raises(ValueError, match="cifar5m_part0.npz"):
        load_cifar5m(tmp_path, [0])
    write_part(tmp_path, 0, X=GOOD_X, Y=GOOD_Y)
    with pytest.raises(FileNotFoundError, match="missing cifar5m_part1.npz, .*cifar5m_part5.npz.*put them in"):
        load_cifar5m(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_cifar5m(tmp_path / "absent")
    with pytest.raises(ValueError, match="part numbers 0-5"):
        load_cifar5m(tmp_path, [0, 7])


def test_cifar5m_data_splits_parts(tmp_path):
    for part in (0, 1):
        write_part(tmp_path, part, X=GOOD_X, Y=GOOD_Y)
    data = cifar5m_data(tmp_path, train_parts=[0], test_part=1, test_size=2)
    assert (len(data.train_labels), len(data.test_labels), data.n_patches, data.patch_dim) == (4, 2, 256, 12)
    x = data.prepare(data.train_images)
    assert x.shape == (4, 256, 12) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="also a training part"):
        cifar5m_data(tmp_path, train_parts=[0, 1], test_part=1)


def test_digits_and_split():
    images, labels = load_digits_images()
    assert images.shape == (1797, 8, 8, 1) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 1 and set(labels.tolist()) == set(range(10))
    train, test = split_indices(1797)
    assert len(train) + len(test) == 1797 and not set(train.tolist()) & set(test.tolist())
    assert torch.equal(split_indices(1797)[1], test)


def test_digits_need_sklearn_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        load_digits_images()


def test_import_needs_neither_sklearn_nor_widgets():
    code = (
        "import sys, causal_rn.vision, causal_rn.vision_experiments\n"
        "bad = [m for m in ('sklearn', 'ipywidgets', 'IPython', 'nbdev') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("shape,patch", [((2, 8, 8, 1), 2), ((3, 32, 32, 3), 2), ((1, 12, 8, 2), 4)])
def test_patchify_round_trip(shape, patch):
    x = torch.randn(shape)
    p = patchify(x, patch)
    B, H, W, C = shape
    assert p.shape == (B, (H // patch) * (W // patch), patch * patch * C)
    assert torch.equal(p[:, 1], x[:, :patch, patch : 2 * patch].reshape(B, -1))  # row-major: 2nd patch of row 0
    assert torch.equal(unpatchify(p, H, W, patch), x)


def test_patchify_errors():
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        patchify(torch.zeros(1, 9, 8, 1))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        patchify(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="do not tile"):
        unpatchify(torch.zeros(1, 16, 4), 8, 6)


def test_minibatches_are_seeded_and_paired():
    x, y = torch.arange(20.0), torch.arange(20)
    a = [yb.tolist() for _, yb in minibatches(x, y, 6, torch.Generator().manual_seed(3), epochs=2)]
    b = [yb.tolist() for _, yb in minibatches(x, y, 6, torch.Generator().manual_seed(3), epochs=2)]
    assert a == b and len(a) == 6 and all(len(batch) == 6 for batch in a)
    assert len(set(sum(a[:3], []))) == 18
    for xb, yb in minibatches(x, y, 6, torch.Generator(), epochs=1):
        assert torch.equal(xb.long(), yb)


def tiny_data():
    from causal_rn.vision import digits_data

    return digits_data()


@pytest.mark.parametrize("kind", ["linear_bi_rn", "transformer", "linear_transformer"])
def test_classifier_forward_and_backward(kind):
    data = tiny_data()
    cfg = vision_run_config(kind, data, model=dict(d_model=16, n_blocks=2))[0]
    assert cfg.context == 17 and cfg.patch_dim == 4 and cfg.causal is False
    torch.manual_seed(0)
    model = build_model(cfg)
    x = data.prepare(data.train_images[:5])
    logits = model(x)
    assert logits.shape == (5, 10)
    torch.nn.functional.cross_entropy(logits, data.train_labels[:5]).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_run_vision_writes_and_skips(tmp_path):
    data = tiny_data()
    kw = dict(model=dict(d_model=8, n_blocks=1), train=dict(iterations=4, eval_every=2, batch_size=16), progress=False)
    s = run_vision("linear_bi_rn", data, "cpu", tmp_path, **kw)
    run = tmp_path / "cpu-digits-linear_bi_rn"
    assert {p.name for p in run.iterdir()} == {"metrics.csv", "checkpoint.pt", "summary.json"}
    assert s["preset"] == "cpu" and s["device"].startswith("cpu") and 0 <= s["final_test_accuracy"] <= 1
    assert run_vision("linear_bi_rn", data, "cpu", tmp_path, **kw) == json.loads(json.dumps(s))


def literal_map(model, patches, layer):
    "Loop over images and patches; approx pre-activation normalisation, exp, one head (a Linear BiRN)."
    ln = lambda v: (v - v.mean()) / v.std(correction=0)
    with torch.no_grad():
        h = torch.cat([model.patch_proj(patches), model.cls_token.expand(len(patches), 1, -1)], 1)
        h = h + model.pos_emb.weight[: h.shape[1]]
        for block in model.blocks[:layer]:
            h = block(h)
        block = model.blocks[layer]
        out = torch.zeros(patches.shape[:2], dtype=patches.dtype)
        for b in range(len(patches)):
            hn = torch.stack([ln(v) for v in h[b]])
            q = block.to_q.weight @ hn[-1] + block.to_q.bias
            for i in range(patches.shape[1]):
                out[b, i] = torch.exp(ln(q) + ln(block.to_p.weight @ hn[i])).norm()
    return out / out.sum(1, keepdim=True)


def test_heat_map_properties_and_literal():
    torch.manual_seed(0)
    model = (
        build_model(
            ModelConfig(
                kind="linear_bi_rn",
                vocab_size=None,
                input="patches",
                patch_dim=4,
                head="classify",
                n_classes=10,
                context=17,
                d_model=12,
                n_blocks=3,
            )
        )
        .double()
        .eval()
    )
    patches = torch.randn(4, 16, 4, dtype=torch.float64)
    for layer in range(3):
        m = cls_relation_map(model, patches, layer)
        assert m.shape == (4, 16) and (m >= 0).all() and not m.requires_grad
        torch.testing.assert_close(m.sum(1), torch.ones(4, dtype=torch.float64))
        torch.testing.assert_close(m, literal_map(model, patches, layer), rtol=1e-9, atol=1e-12)
    assert cls_pair_preactivations(model, patches, -1).shape == (4, 17, 12)  # <CLS>-<CLS> included here
    with pytest.raises(IndexError, match="block index"):
        cls_relation_map(model, patches, 3)


def test_heat_maps_refuse_attention_models_and_grid_shape():
    data = tiny_data()
    transformer = build_model(vision_run_config("transformer", data, model=dict(d_model=8, n_blocks=1))[0])
    with pytest.raises(ValueError, match="no relation blocks"):
        cls_relation_map(transformer, torch.zeros(1, 16, 4), 0)
    birn = build_model(vision_run_config("linear_bi_rn", data, model=dict(d_model=8, n_blocks=2))[0])
    maps = heatmaps(birn, data, data.test_images[:3])
    assert maps.shape == (2, 3, 4, 4)
    torch.testing.assert_close(maps.sum((2, 3)), torch.ones(2, 3))


def _npy(shape, dtype="|u1", data=b""):
    "A .npy file written by hand: a version 1.0 header for `shape` and `dtype`, then `data`, whatever its length."
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, dict(descr=dtype, fortran_order=False, shape=shape))
    return buf.getvalue() + data


def _write_zip(folder, members, part=0):
    import zipfile

    with zipfile.ZipFile(folder / f"cifar5m_part{part}.npz", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_cifar5m_reads_headers_before_arrays(tmp_path):
    "A header that claims 10^12 images is refused for not fitting the file, not answered with a MemoryError."
    y = _npy((4,), "<i2", GOOD_Y.astype("<i2").tobytes())
    _write_zip(tmp_path, {"X.npy": _npy((10**12, 32, 32, 3), data=b"\0" * 100), "Y.npy": y})
    with pytest.raises(
        ValueError, match=r"claims shape \(1000000000000, 32, 32, 3\).*holds 100 bytes of it.*download it again"
    ):
        load_cifar5m(tmp_path, [0])
    _write_zip(tmp_path, {"X.npy": _npy((4, 32, 32, 3), data=GOOD_X.tobytes()), "Y.npy": y})  # the same, right
    assert np.array_equal(load_cifar5m(tmp_path, [0])[0].numpy(), GOOD_X)


@pytest.mark.parametrize(
    "members,message",
    [
        ({"X": "pickle", "Y": "pickle"}, "member 'X' that is not a NumPy .npy array"),
        ({"X.npy": "good", "labels.pkl": "pickle"}, "member 'labels.pkl' that is not a NumPy .npy array"),
        ({"X.npy": "pickle", "Y.npy": "good"}, "cannot be read as an .npz archive"),
        ({"X.npy": "good", "Y.npy": "object"}, "Y.npy holds Python objects"),
    ],
)
def test_cifar5m_refuses_members_that_are_not_arrays(tmp_path, members, message):
    import pickle

    content = {
        "pickle": pickle.dumps(GOOD_X),
        "good": _npy((4, 32, 32, 3), data=GOOD_X.tobytes()),
        "object": _npy((4,), "|O", pickle.dumps(list(GOOD_Y))),
    }
    _write_zip(tmp_path, {name: content[kind] for name, kind in members.items()})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_cifar5m(tmp_path, [0])


def test_cifar5m_names_what_is_really_wrong(tmp_path, monkeypatch):
    write_part(tmp_path, 0, X=GOOD_X[:0], Y=GOOD_Y[:0])  # an empty part: no NaN mean later
    with pytest.raises(ValueError, match=r"holds no images \(X has shape \(0, 32, 32, 3\)\)"):
        load_cifar5m(tmp_path, [0])
    (tmp_path / "cifar5m_part1.npz").mkdir()  # a folder where a part should be
    with pytest.raises(ValueError, match="cifar5m_part1.npz: is a folder, not a file"):
        load_cifar5m(tmp_path, [1])
    write_part(tmp_path, 0, X=GOOD_X, Y=GOOD_Y)
    import pathlib

    monkeypatch.setattr(
        pathlib.Path, "open", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
    )
    with pytest.raises(
        ValueError, match=r"is there but cannot be read \(PermissionError: Permission denied\).*permissions"
    ):
        load_cifar5m(tmp_path, [0])  # not "a truncated download"
    monkeypatch.undo()
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load_cifar5m(tmp_path / "cifar5m_part0.npz", [0])
    with pytest.raises(ValueError, match="more than once"):
        load_cifar5m(tmp_path, [0, 0])
    with pytest.raises(ValueError, match="n_classes must be a positive int"):
        from causal_rn.vision import load_cifar5m_part

        load_cifar5m_part(tmp_path / "cifar5m_part0.npz", n_classes=0)


def test_image_arguments_are_checked():
    from causal_rn.vision import channel_stats, digits_data, standardise

    with pytest.raises(ValueError, match="patch must be a positive int, got 0"):
        patchify(torch.zeros(1, 4, 4, 1), 0)
    with pytest.raises(ValueError, match="patch must be a positive int, got -2"):
        patchify(torch.zeros(1, 4, 4, 1), -2)
    with pytest.raises(ValueError, match="patch size 8 is larger than the 4x4 images"):
        patchify(torch.zeros(1, 4, 4, 1), 8)
    with pytest.raises(ValueError, match="at least 1"):
        patchify(torch.zeros(1, 4, 0, 1))
    with pytest.raises(ValueError, match="non-empty batch"):
        channel_stats(torch.zeros(0, 4, 4, 3))
    with pytest.raises(ValueError, match="std > 0"):
        standardise(torch.ones(1, 2, 2, 1), torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="does not tile the 8x8 images"):
        digits_data(patch=3)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        next(minibatches(torch.zeros(3), torch.zeros(3), 1, None))
    with pytest.raises(ValueError, match="at least one example"):
        next(minibatches(torch.zeros(0), torch.zeros(0), 1, torch.Generator()))


def test_heat_maps_check_their_input():
    data = tiny_data()
    birn = build_model(vision_run_config("linear_bi_rn", data, model=dict(d_model=8, n_blocks=2))[0])
    for images in (data.test_images[0], data.test_images[:0], torch.rand(2, 6, 6, 1), torch.rand(2, 8, 8, 3)):
        with pytest.raises(ValueError, match=r"stored images \(N, 8, 8, 1\)"):
            heatmaps(birn, data, images)
    for layers in ([], 2):
        with pytest.raises(ValueError, match="non-empty list of block indices"):
            heatmaps(birn, data, data.test_images[:2], layers)
    with pytest.raises(IndexError, match="block index from -2 to 1, got 2"):
        heatmaps(birn, data, data.test_images[:2], [2])
    with pytest.raises(TypeError, match="data must be an ImageData"):
        heatmaps(birn, None, data.test_images[:2])
    with pytest.raises(TypeError, match="model must be a Model"):
        cls_relation_map(None, torch.zeros(1, 16, 4), 0)
