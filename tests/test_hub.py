"""HAT checkpoint import (fairseq format, no fairseq, no pickled code) and model downloads."""

import argparse
import collections
import hashlib
import http.server
import io
import json
import threading
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from conftest import assert_one_line_error, run_cli, tiny_space

from hat.cli import main as cli_main
from hat.errors import HatError
from hat.hub import (
    convert_state_dict,
    download,
    import_hat_checkpoint,
    read_hat_checkpoint,
    registry,
    resolve,
)
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings


class FairseqMeter:  # a fairseq class a HAT checkpoint pickles (fairseq is not installed)
    def __init__(self):
        self.avg = 1.5


def to_fairseq(net: SuperTransformer, split_qkv: bool) -> dict:
    """hat's state dict under fairseq/HAT key names (the inverse of hat.hub's mapping)."""
    sd = collections.OrderedDict()
    for key, value in net.state_dict().items():
        if key == "embed_tokens.weight":
            sd["encoder.embed_tokens.weight"] = sd["decoder.embed_tokens.weight"] = value
            continue
        key = key.replace("encoder_layers.", "encoder.layers.").replace(
            "decoder_layers.", "decoder.layers."
        )
        key = key.replace("self_attn_norm", "self_attn_layer_norm").replace(
            "ende_attn_norm", "encoder_attn_layer_norm"
        )
        key = key.replace("ffn_norm", "final_layer_norm").replace("ende_attn.", "encoder_attn.")
        if ".in_proj." in key or ".q_proj." in key or ".kv_proj." in key:
            prefix, kind = key.rsplit(".", 2)[0], key.rsplit(".", 1)[1]
            if ".in_proj." in key:
                q, k, v = value.chunk(3)
            elif ".q_proj." in key:
                sd[f"{prefix}._q_{kind}"] = value
                continue
            else:
                k, v = value.chunk(2)
                q = sd.pop(f"{prefix}._q_{kind}")
            if split_qkv:
                for name, t in zip("qkv", (q, k, v), strict=False):
                    sd[f"{prefix}.{name}_proj.{kind}"] = t
            else:
                sd[f"{prefix}.in_proj_{kind}"] = torch.cat([q, k, v])
            continue
        sd[key] = value
    sd["encoder.embed_positions._float_tensor"] = torch.zeros(1)
    sd["encoder.version"] = torch.tensor([2.0])
    return sd


def hat_args(space) -> argparse.Namespace:
    d = {
        **{k.replace("-", "_"): v for k, v in space.to_hat_dict().items()},
        "share_all_embeddings": True,
        "arch": "transformersuper_wmt_en_de",
        "dropout": 0.3,
    }
    return argparse.Namespace(**d)


@pytest.mark.parametrize("split_qkv", [False, True])
def test_import_fairseq_checkpoint_gives_the_same_model(tmp_path: Path, split_qkv: bool):
    torch.manual_seed(0)
    space = tiny_space(
        encoder_embed_dim=48, encoder_embed_choice=[48, 32]
    )  # same dims: shared table
    net = SuperTransformer(space, ModelSettings(vocab_size=40, qkv_dim=32)).eval()
    path = tmp_path / "hat.pt"
    torch.save(
        {
            "args": hat_args(space),
            "model": to_fairseq(net, split_qkv),
            "extra_state": {"train_meters": {"loss": FairseqMeter()}},
            "optimizer_history": [],
        },
        path,
    )
    imported = import_hat_checkpoint(path)
    src = torch.randint(4, 40, (2, 7))
    prev = torch.randint(4, 40, (2, 5))
    cfg = space.sample(__import__("random").Random(1))
    net.set_config(cfg)
    with torch.no_grad():
        assert torch.allclose(imported.export(cfg)(src, prev), net(src, prev), atol=1e-5)
    meter = read_hat_checkpoint(path)["extra_state"]["train_meters"]["loss"]
    assert type(meter).__name__ == "FairseqMeter" and "placeholder" in type(meter).__module__
    sub = tmp_path / "sub.yml"
    cfg.to_yaml(sub)
    result = run_cli(
        "convert", "--path", str(path), f"--configs={sub}", "--out", str(tmp_path / "compact.pt")
    )
    assert result.returncode == 0, result.stderr


def test_fairseq_012_tied_output_projection_is_the_table():
    """fairseq >= 0.10 stores the tied output projection under its own key: the same tensor as
    the decoder's table is dropped; a different one is an untied projection hat cannot hold."""
    torch.manual_seed(0)
    space = tiny_space(encoder_embed_dim=48, encoder_embed_choice=[48, 32])  # a shared table
    net = SuperTransformer(space, ModelSettings(vocab_size=40, qkv_dim=32))
    sd = to_fairseq(net, split_qkv=True)
    sd["decoder.output_projection.weight"] = sd["decoder.embed_tokens.weight"].clone()
    converted = convert_state_dict(sd, share_all=True)
    assert "decoder.output_projection.weight" not in converted
    assert net.load_state_dict(converted, strict=True)
    sd["decoder.output_projection.weight"] = torch.randn_like(sd["decoder.embed_tokens.weight"])
    with pytest.raises(HatError, match="decoder.output_projection.weight"):
        convert_state_dict(sd, share_all=True)


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/hat_pwned_marker",))


def test_pickled_code_never_runs(tmp_path: Path):
    marker = Path("/tmp/hat_pwned_marker")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"args": argparse.Namespace(), "model": {}, "evil": Evil()}, path)
    try:
        read_hat_checkpoint(path)
    except HatError:
        pass
    assert not marker.exists()
    with pytest.raises(HatError, match="not a HAT/fairseq checkpoint"):
        read_hat_checkpoint(_write(tmp_path / "other.pt", {"weights": 1}))
    assert_one_line_error(
        run_cli("convert", "--path", str(tmp_path / "none.pt"), "--out", "x.pt"), "not found"
    )


def _write(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


PUBLISHED = "https://www.dropbox.com/s/ntj1gfskish8vz3/HAT_iwslt14deen_titanxp@45.6ms_bleu@33.4.pt"
NAME = "HAT_iwslt14deen_titanxp@45.6ms_bleu@33.4"


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def checkpoint_bytes() -> bytes:
    """A small HAT/fairseq-shaped checkpoint file (> 100 kB, so that a resume has work to do)."""
    torch.manual_seed(0)
    model = collections.OrderedDict(
        [
            ("encoder.embed_tokens.weight", torch.randn(200, 160)),
            ("encoder.version", torch.tensor([2.0])),
        ]
    )
    args = argparse.Namespace(arch="transformersuper_wmt_en_de")
    return _torch_bytes({"args": args, "model": model})


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves `payload` (honouring Range); `extra_length` > 0 announces more bytes than it sends."""

    payload = b""
    content_type = "application/octet-stream"
    extra_length = 0
    requested: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).requested.append(self.path)
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(body) + self.extra_length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.payload = checkpoint_bytes()
    RangeHandler.content_type, RangeHandler.extra_length = "application/octet-stream", 0
    RangeHandler.requested = []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/model.pt", RangeHandler.payload
    httpd.shutdown()
    httpd.server_close()


def test_download_resume_and_sha256(server, tmp_path: Path):
    url, payload = server
    digest = hashlib.sha256(payload).hexdigest()
    part = tmp_path / "m.pt.part"
    part.write_bytes(payload[:100_000])  # an interrupted earlier download
    path = download("m", tmp_path, url=url, progress=False)
    assert path.read_bytes() == payload and not part.exists()
    assert '"m": "' + digest in (tmp_path / "sha256.json").read_text()  # recorded on first download
    (tmp_path / "m.pt").write_bytes(b"corrupted")
    again = download("m", tmp_path, url=url, progress=False)
    assert again.read_bytes() == payload  # re-fetched, verified
    with pytest.raises(HatError, match="does not match the expected"):
        download("n", tmp_path, url=url, sha256="0" * 64, progress=False)
    assert not (tmp_path / "n.pt").exists() and not (tmp_path / "n.pt.part").exists()
    with pytest.raises(HatError, match="not in the registry.*pass --url"):
        download("not_a_hat_model", tmp_path, progress=False)
    result = run_cli(
        "download", "--model-name", "x", "--url", url, "--cache-dir", str(tmp_path / "c")
    )
    assert result.returncode == 0 and (tmp_path / "c" / "x.pt").read_bytes() == payload


def test_resolve_gives_the_published_download_link():
    """The registry holds the authors' link in its downloading form ('?dl=1', not the preview)."""
    src = resolve(NAME)
    assert src.url == PUBLISHED + "?dl=1" and src.name == NAME and src.kind == "subtransformer"
    assert src.sha256 is None  # none published: locked at the first download


def test_registry_has_every_published_model(shared_data: Path):
    published = json.loads((shared_data / "hat-models.json").read_text())["models"]
    models = registry()
    assert len(published) == 48 and set(models) == set(published)
    for name, link in published.items():
        assert link.endswith("?dl=0")
        assert models[name]["url"] == link.removesuffix("?dl=0") + "?dl=1", name
        assert resolve(name).url == models[name]["url"]
    assert published[NAME] == PUBLISHED + "?dl=0"


def test_hat_download_fetches_the_published_link(server, tmp_path: Path, monkeypatch, capsys):
    """`hat download --model-name NAME` runs against a local server standing in for Dropbox."""
    url, payload = server
    seen: list[str] = []
    real_urlopen = urllib.request.urlopen

    def redirect(request, timeout=None):
        seen.append(request.full_url)
        local = urllib.request.Request(url, headers=dict(request.header_items()))
        return real_urlopen(local, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", redirect)
    cache = tmp_path / "cache"
    assert cli_main(["download", "--model-name", NAME, "--cache-dir", str(cache)]) == 0
    assert seen == [PUBLISHED + "?dl=1"]
    assert (cache / f"{NAME}.pt").read_bytes() == payload
    recorded = json.loads((cache / "sha256.json").read_text())
    assert recorded == {NAME: hashlib.sha256(payload).hexdigest()}
    assert f"{NAME} -> {cache / NAME}.pt" in capsys.readouterr().out


HTML = b"\n<!DOCTYPE html><html><head><title>Dropbox</title></head><body>preview</body></html>"


@pytest.mark.parametrize(
    "case, error",
    [
        ("truncated", r"truncated: got \d+ of \d+ bytes"),
        ("html_content_type", r"HTML page.*dl=1"),
        ("html_body", r"HTML page.*dl=1"),
        ("random_bytes", "not a readable torch checkpoint"),
        ("foreign_torch_file", "not a HAT/fairseq checkpoint"),
        ("wrong_sha256", "does not match the expected"),
    ],
)
def test_a_bad_download_is_never_saved(server, tmp_path: Path, case: str, error: str):
    """Short bodies, preview pages, files that are not HAT checkpoints and wrong digests are
    rejected before the rename: nothing in the cache, no sha256 recorded."""
    url, payload = server
    sha256 = None
    if case == "truncated":
        RangeHandler.extra_length = 5000
    elif case == "html_content_type":
        RangeHandler.payload, RangeHandler.content_type = HTML, "text/html; charset=utf-8"
    elif case == "html_body":
        RangeHandler.payload = HTML
    elif case == "random_bytes":
        RangeHandler.payload = bytes(range(256)) * 1000
    elif case == "foreign_torch_file":
        RangeHandler.payload = _torch_bytes({"weights": torch.zeros(3)})
    else:
        sha256 = hashlib.sha256(payload + b"x").hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(HatError, match=error) as info:
        download("m", cache, url=url, sha256=sha256, progress=False)
    assert "\n" not in str(info.value) and url in str(info.value)
    assert list(cache.iterdir()) == []
    assert RangeHandler.requested == ["/model.pt"]


@pytest.mark.parametrize(
    "name", ["../evil", "a/../../evil", "{tmp}/evil", "..", ".hidden", "e\\v:il"]
)
def test_a_model_name_never_leaves_the_cache(server, tmp_path: Path, name: str):
    """Names with '/', '..' or odd characters are refused before anything is fetched or written."""
    url, _ = server
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(HatError, match="neither a registry name nor a plain file name"):
        download(name.format(tmp=tmp_path), cache, url=url, progress=False)
    assert not (tmp_path / "deep").exists() and RangeHandler.requested == []
    assert list(tmp_path.iterdir()) == []


def test_an_unnamed_url_gets_a_sanitised_file_name(server, tmp_path: Path):
    url, payload = server
    odd = url.replace("/model.pt", "/models/..%2F..%2Fevil%20model.pt")
    path = download(None, tmp_path / "cache", url=odd, progress=False)
    assert path == tmp_path / "cache" / "evil_model.pt" and path.read_bytes() == payload


def test_cli_rejects_a_preview_page_in_one_line(server, tmp_path: Path):
    url, _ = server
    RangeHandler.payload, RangeHandler.content_type = HTML, "text/html"
    result = run_cli(
        "download", "--model-name", "m", "--url", url + "?dl=0", "--cache-dir", str(tmp_path / "c")
    )
    assert_one_line_error(result, "HTML page", "?dl=1")
    assert list((tmp_path / "c").iterdir()) == []
