"""HAT checkpoint import (fairseq format, no fairseq, no pickled code) and model downloads."""
import argparse
import collections
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from hat.errors import HatError
from hat.hub import download, import_hat_checkpoint, read_hat_checkpoint
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings

from conftest import assert_one_line_error, run_cli, tiny_space


class FairseqMeter:  # stands for fairseq classes a HAT checkpoint pickles (fairseq is not installed)
    def __init__(self):
        self.avg = 1.5


def to_fairseq(net: SuperTransformer, split_qkv: bool) -> dict:
    """hat's state dict under fairseq/HAT key names (the inverse of hat.hub's mapping)."""
    sd = collections.OrderedDict()
    for key, value in net.state_dict().items():
        if key == "embed_tokens.weight":
            sd["encoder.embed_tokens.weight"] = sd["decoder.embed_tokens.weight"] = value
            continue
        key = key.replace("encoder_layers.", "encoder.layers.").replace("decoder_layers.", "decoder.layers.")
        key = key.replace("self_attn_norm", "self_attn_layer_norm").replace("ende_attn_norm", "encoder_attn_layer_norm")
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
                for name, t in zip("qkv", (q, k, v)):
                    sd[f"{prefix}.{name}_proj.{kind}"] = t
            else:
                sd[f"{prefix}.in_proj_{kind}"] = torch.cat([q, k, v])
            continue
        sd[key] = value
    sd["encoder.embed_positions._float_tensor"] = torch.zeros(1)
    sd["encoder.version"] = torch.tensor([2.0])
    return sd


def hat_args(space) -> argparse.Namespace:
    d = {**{k.replace("-", "_"): v for k, v in space.to_hat_dict().items()}, "share_all_embeddings": True,
         "arch": "transformersuper_wmt_en_de", "dropout": 0.3}
    return argparse.Namespace(**d)


@pytest.mark.parametrize("split_qkv", [False, True])
def test_import_fairseq_checkpoint_gives_the_same_model(tmp_path: Path, split_qkv: bool):
    torch.manual_seed(0)
    space = tiny_space(encoder_embed_dim=48, encoder_embed_choice=[48, 32])  # same dims: shared table
    net = SuperTransformer(space, ModelSettings(vocab_size=40, qkv_dim=32)).eval()
    path = tmp_path / "hat.pt"
    torch.save({"args": hat_args(space), "model": to_fairseq(net, split_qkv),
                "extra_state": {"train_meters": {"loss": FairseqMeter()}}, "optimizer_history": []}, path)
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
    result = run_cli("convert", "--path", str(path), f"--configs={sub}", "--out", str(tmp_path / "compact.pt"))
    assert result.returncode == 0, result.stderr


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
    assert_one_line_error(run_cli("convert", "--path", str(tmp_path / "none.pt"), "--out", "x.pt"), "not found")


def _write(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


class RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.payload = bytes(range(256)) * 4000
    httpd = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/model.pt", RangeHandler.payload
    httpd.shutdown()


def test_download_resume_and_sha256(server, tmp_path: Path):
    url, payload = server
    digest = hashlib.sha256(payload).hexdigest()
    part = tmp_path / "m.pt.part"
    part.write_bytes(payload[:100_000])  # an interrupted earlier download
    path = download("m", tmp_path, url=url, progress=False)
    assert path.read_bytes() == payload and not part.exists()
    assert '"m": "' + digest in (tmp_path / "sha256.json").read_text()  # recorded on first download
    (tmp_path / "m.pt").write_bytes(b"corrupted")
    assert download("m", tmp_path, url=url, progress=False).read_bytes() == payload  # re-fetched, verified
    with pytest.raises(HatError, match="does not match the expected"):
        download("n", tmp_path, url=url, sha256="0" * 64, progress=False)
    assert not (tmp_path / "n.pt").exists() and not (tmp_path / "n.pt.part").exists()
    with pytest.raises(HatError, match="pass --url"):
        download("HAT_wmt14ende_super_space0", tmp_path, progress=False)
    result = run_cli("download", "--model-name", "x", "--url", url, "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 0 and (tmp_path / "c" / "x.pt").read_bytes() == payload
