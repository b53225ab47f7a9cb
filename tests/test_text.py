"Text data and language models, as a user of the installed package calls them."

import csv, random

import pytest
import torch

from causal_rn.lm import lm_run_config, run_lm, sample_text
from causal_rn.train import load_model
from causal_rn.model import build_model
from causal_rn.text import ByteTokenizer, encode_splits, lm_batch, load_wikitext103, python_reference_corpus

WIKI = (
    " \n = Robert Boulter = \n \n Robert Boulter is an English film and television actor . \n \n = = Career = = "
    "\n \n In 2006 , he starred . \n"
)


def random_text(rng: random.Random, n: int) -> str:
    "Characters from every Unicode plane (surrogates excluded: they are not text)."
    chars = []
    while len(chars) < n:
        c = rng.choice(
            [
                rng.randrange(0x20, 0x7F),
                rng.randrange(0x80, 0x800),
                rng.randrange(0x800, 0xD800),
                rng.randrange(0xE000, 0x10000),
                rng.randrange(0x10000, 0x110000),
            ]
        )
        chars.append(chr(c))
    return "".join(chars)


def test_tokenizer_round_trips_any_text():
    tok, rng = ByteTokenizer(), random.Random(0)
    for n in (0, 1, 7, 200):
        for _ in range(20):
            text = random_text(rng, n)
            ids = tok.encode(text)
            assert ids.dtype == torch.long and (ids >= 0).all() and (ids < 256).all()
            assert tok.decode(ids) == text


def test_tokenizer_rejects_bad_ids():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        tok.decode([300])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        tok.decode(torch.zeros(3))


def test_wikitext_loader(tmp_path):
    folder = tmp_path / "wikitext-103-raw"
    folder.mkdir()
    (folder / "wiki.train.raw").write_text(WIKI * 4, encoding="utf-8")
    assert load_wikitext103(tmp_path, "train") == WIKI * 4
    assert load_wikitext103(folder, "train", max_chars=10) == WIKI[:10]
    with pytest.raises(FileNotFoundError, match="wiki.valid.raw"):
        load_wikitext103(tmp_path, "valid")
    (folder / "wiki.test.raw").write_bytes(b"\x80\x81 = X = \n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_wikitext103(tmp_path, "test")
    (folder / "wiki.test.raw").write_text("plain text with no titles\n")
    with pytest.raises(ValueError, match="does not look like WikiText-103"):
        load_wikitext103(tmp_path, "test")
    (folder / "wiki.test.raw").write_text(" \n\n \n")
    with pytest.raises(ValueError, match="is empty"):
        load_wikitext103(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_wikitext103(tmp_path, "dev")


@pytest.mark.parametrize("max_chars", [-5, -1, 2.5, True, "10"])
def test_wikitext_max_chars_is_none_or_an_int_from_0(tmp_path, max_chars):
    (tmp_path / "wiki.train.raw").write_text(WIKI, encoding="utf-8")
    with pytest.raises(ValueError, match="max_chars must be an int >= 0"):
        load_wikitext103(tmp_path, max_chars=max_chars)
    assert load_wikitext103(tmp_path, max_chars=0) == "" and load_wikitext103(tmp_path, max_chars=None) == WIKI


def test_wikitext_names_files_and_folders_for_what_they_are(tmp_path, monkeypatch):
    (tmp_path / "wiki.train.raw").write_text(WIKI, encoding="utf-8")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load_wikitext103(tmp_path / "wiki.train.raw")
    (tmp_path / "wiki.valid.raw").mkdir()
    with pytest.raises(ValueError, match="wiki.valid.raw is a folder"):
        load_wikitext103(tmp_path, "valid")
    with pytest.raises(TypeError, match="root must be a folder path"):
        load_wikitext103(None)
    import pathlib

    def unreadable(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pathlib.Path, "read_bytes", unreadable)  # tests may run as root: simulated
    with pytest.raises(ValueError, match=r"cannot be read \(PermissionError: Permission denied\).*permissions"):
        load_wikitext103(tmp_path, "train")


def test_windows_and_splits():
    train, valid = encode_splits(python_reference_corpus(), 0.1)
    assert len(valid) == pytest.approx(0.1 * (len(train) + len(valid)), abs=1)
    x, y = lm_batch(train, 3, 64, torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (3, 64) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="context \\+ 1"):
        lm_batch(train[:5], 1, 8)
    with pytest.raises(ValueError, match="1-D integer"):
        lm_batch(train.bool(), 1, 8)
    with pytest.raises(ValueError, match="leaves an empty training or validation split"):
        encode_splits("a")
    assert ByteTokenizer().decode([]) == "" and ByteTokenizer().decode(
        train[:5].to(torch.int16)
    ) == ByteTokenizer().decode(train[:5])
    with pytest.raises(TypeError, match="integers"):
        ByteTokenizer().decode(torch.ones(2, dtype=torch.bool))


def test_language_model_run_resume_and_sampling(tmp_path):
    text = python_reference_corpus()[:30_000]
    kw = dict(
        model=dict(d_model=16, n_blocks=1),
        train_kw=dict(context=24, batch_size=4, iterations=6, eval_every=3, eval_batches=1, checkpoint_every=3),
    )
    whole = run_lm("whole", "linear_causal_rn", root=tmp_path, text=text, progress=False, **kw)
    half = dict(kw, train_kw=dict(kw["train_kw"], iterations=3))
    run_lm("cut", "linear_causal_rn", root=tmp_path, text=text, progress=False, **half)
    (tmp_path / "cut" / "summary.json").unlink()  # as if stopped after its checkpoint
    resumed = run_lm("cut", "linear_causal_rn", root=tmp_path, text=text, progress=False, **kw)
    assert resumed["final_valid_loss"] == whole["final_valid_loss"]
    read = lambda run: [
        {k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(tmp_path / run / "metrics.csv"))
    ]
    assert read("cut") == read("whole")  # bit for bit, every iteration
    model = load_model(tmp_path / "whole")
    a = sample_text(model, "Three years later,", 6, seed=3)
    assert (
        a
        == sample_text(model, "Three years later,", 6, seed=3)
        == sample_text(model, "Three years later,", 6, seed=3, use_cache=False)
    )
    assert a.startswith("Three years later,")
    with pytest.raises(ValueError, match="temperature"):
        sample_text(model, "x", 2, temperature=-0.5)


def test_language_model_configs():
    mcfg, task, cfg = lm_run_config("transformer", "cpu", train=dict(context=512))
    assert (mcfg.vocab_size, mcfg.context, task.cfg.context, cfg.iterations) == (256, 512, 512, 1500)
    with pytest.raises(ValueError, match="fixes the model's \\['context'\\]"):
        lm_run_config(model=dict(context=512))
    assert build_model(mcfg)(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 256)
    with pytest.raises(ValueError, match="must be causal"):
        lm_run_config("linear_bi_rn")
    with pytest.raises(ValueError, match="batch_size"):
        lm_run_config(train=dict(batch_size=0))
