"""The command line as HAT users know it.

Every command builds a :class:`HatArgumentParser`: configargparse with
``--configs=file.yml`` (and ``--sub-configs`` where HAT has it), HAT's dashed key
names, command-line flags overriding the files. A key that no hat command knows is an
error naming the file and key; a key that belongs to another step (a latency dataset
YAML also carries ``data`` and ``max-tokens``, a SuperTransformer YAML carries training
keys the search does not use) is accepted and ignored, so one file serves every step and
HAT's files load unchanged into every command.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import sys
from collections.abc import Sequence

import configargparse

from hat.config import load_yaml
from hat.errors import HatError

# Every key that appears in the HAT authors' YAML configs (train, latency dataset,
# latency predictor, evolutionary search, SubTransformer files).
HAT_KEYS = frozenset(
    """
    arch share-all-embeddings share-decoder-input-output-embed max-tokens data
    source-lang target-lang
    distributed-world-size ddp-backend cpu fp16 optimizer adam-betas clip-norm weight-decay
    dropout attention-dropout criterion label-smoothing update-freq max-update max-epoch
    warmup-updates lr-scheduler warmup-init-lr max-lr lr lr-shrink keep-last-epochs
    save-interval validate-interval save-dir restore-file train-subtransformer
    encoder-embed-dim decoder-embed-dim encoder-ffn-embed-dim decoder-ffn-embed-dim
    encoder-layers decoder-layers encoder-attention-heads decoder-attention-heads qkv-dim
    encoder-embed-choice decoder-embed-choice encoder-ffn-embed-dim-choice
    decoder-ffn-embed-dim-choice encoder-layer-num-choice decoder-layer-num-choice
    encoder-self-attention-heads-choice decoder-self-attention-heads-choice
    decoder-ende-attention-heads-choice decoder-arbitrary-ende-attn-choice
    encoder-embed-dim-subtransformer decoder-embed-dim-subtransformer
    encoder-ffn-embed-dim-all-subtransformer decoder-ffn-embed-dim-all-subtransformer
    encoder-layer-num-subtransformer decoder-layer-num-subtransformer
    encoder-self-attention-heads-all-subtransformer decoder-self-attention-heads-all-subtransformer
    decoder-ende-attention-heads-all-subtransformer decoder-arbitrary-ende-attn-all-subtransformer
    lat-dataset-path lat-dataset-size latgpu latcpu latiter latsilent
    feature-norm lat-norm feature-dim hidden-dim hidden-layer-num ckpt-path train-steps bsz
    evo-iter population-size parent-size mutation-size crossover-size mutation-prob
    write-config-path latency-constraint
    """.split()
)


class HatArgumentParser(configargparse.ArgumentParser):
    """configargparse with HAT's YAML conventions and one-line errors (exit code 2)."""

    def __init__(self, prog: str, description: str, config_options: Sequence[str] = ("--configs",)):
        super().__init__(
            prog=prog,
            description=description,
            config_file_parser_class=configargparse.YAMLConfigFileParser,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        self._config_options = tuple(config_options)
        for option in self._config_options:
            self.add_argument(
                option,
                is_config_file=True,
                metavar="FILE.yml",
                help="YAML file with HAT's dashed key names; flags override it",
            )

    def convert_item_to_command_line_arg(self, action, key, value):
        """A YAML key in its `no-` spelling (`no-progress-bar: True`) means what the flag
        `--no-progress-bar` means; configargparse reads any key of a --x/--no-x pair as --x."""
        if (
            isinstance(action, argparse.BooleanOptionalAction)
            and f"--{key}" == action.option_strings[1]
            and isinstance(value, str)
        ):
            lowered = value.lower()
            if lowered in ("true", "yes", "on", "1"):
                value = "false"
            elif lowered in ("false", "no", "off", "0"):
                value = "true"
        return super().convert_item_to_command_line_arg(action, key, value)

    def error(self, message: str):  # argparse calls this for every usage error
        raise HatError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def parse_known_args(self, args=None, namespace=None, **kwargs):
        args = list(args) if args is not None else None
        own = self.known_keys()
        self._accept_other_commands_hat_keys()
        self._reject_other_commands_flags(sys.argv[1:] if args is None else args, own)
        for path in self._config_paths(args):
            self._check_config_file(path)
        return super().parse_known_args(args=args, namespace=namespace, **kwargs)

    def _reject_other_commands_flags(self, argv: list[str], own: set[str]) -> None:
        """Another command's key is fine in a shared YAML file, not typed on this command line
        (HAT's own keys excepted: HAT users pass them to every script)."""
        for token in argv:
            key = token[2:].split("=", 1)[0] if token.startswith("--") else None
            if key and key not in own and key not in HAT_KEYS and key in all_command_keys():
                raise HatError(
                    f"{self.prog}: --{key} is not an option of this command (another hat command "
                    f"takes it); see `{self.prog} --help`"
                )

    def known_keys(self) -> set[str]:
        return {
            s[2:] for action in self._actions for s in action.option_strings if s.startswith("--")
        }

    def _accept_other_commands_hat_keys(self) -> None:
        for key in sorted((HAT_KEYS | all_command_keys()) - self.known_keys()):
            self.add_argument(
                f"--{key}",
                nargs="*",
                help=argparse.SUPPRESS,
                dest=f"unused_hat_key_{key.replace('-', '_')}",
            )

    def _config_paths(self, args: list[str] | None) -> list[str]:
        argv = sys.argv[1:] if args is None else args
        paths = []
        for i, token in enumerate(argv):
            for option in self._config_options:
                if token.startswith(option + "="):
                    paths.append(token.split("=", 1)[1])
                elif token == option and i + 1 < len(argv):
                    paths.append(argv[i + 1])
        return paths

    def _check_config_file(self, path: str) -> None:
        data = load_yaml(path)
        known = self.known_keys()
        for key in data:
            if str(key) not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise HatError(
                    f"{path}: unknown key '{key}'{hint}; "
                    f"`{self.prog} --help` lists the keys this command takes"
                )


@functools.lru_cache(maxsize=1)
def all_command_keys() -> frozenset[str]:
    """Every dashed key some hat command takes (for YAML files shared between steps)."""
    import importlib

    from hat.cli import COMMANDS  # here: the commands import this module

    keys: set[str] = set()
    for module, _ in COMMANDS.values():
        parser = importlib.import_module(module).build_parser()
        keys |= {s[2:] for a in parser._actions for s in a.option_strings if s.startswith("--")}
    return frozenset(keys - {"help", "configs", "sub-configs", "evo-configs"})
