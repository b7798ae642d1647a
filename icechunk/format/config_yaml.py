"""Spec-1 ``config.yaml`` ↔ the serde-shaped repository configuration (FORMAT.md §4.5).

The file is the YAML serialization of the same ``RepositoryConfig`` as ``Repo.config``
(see :mod:`icechunk.format.repo_config` for the value's shape).  Newtype and struct enum
variants are YAML tags (``store: !s3_compatible {...}``, ``!local_file_system ''``,
``!azure {}``, ``!Axis 0``); here they become the externally tagged one-entry dicts of the
serde shape (``{"s3_compatible": {...}}``).  Unit variants are plain strings in both forms.

Old files (``test-repo-v1``, Icechunk 0.1) use a legacy container model: containers keyed by a
short name with a ``name`` field and possibly a ``url_prefix`` without a trailing ``/``.  They
decode like any other map; judging them is up to the configuration layer.
"""

from __future__ import annotations

from typing import Any

import yaml

from icechunk._errors import ErrorKind, FormatError
from icechunk.format.repo_config import normalize_repo_config

__all__ = ["decode_config_yaml", "encode_config_yaml"]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """Safe loader turning every local tag ``!variant`` into ``{"variant": value}``."""


def _construct_variant(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        # The explicit tag hides the scalar's implicit type: resolve it as if untagged, so
        # ``!Axis 0`` gives 0 and ``!local_file_system ''`` gives "".
        implicit = (node.style is None, False)
        tag = loader.resolve(yaml.ScalarNode, node.value, implicit)
        node = yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark, node.style)
    elif isinstance(node, yaml.SequenceNode):
        node = yaml.SequenceNode(
            "tag:yaml.org,2002:seq", node.value, node.start_mark, node.end_mark, node.flow_style
        )
    else:
        node = yaml.MappingNode(
            "tag:yaml.org,2002:map", node.value, node.start_mark, node.end_mark, node.flow_style
        )
    return {suffix: loader.construct_object(node, deep=True)}


_Loader.add_multi_constructor("!", _construct_variant)


class _Variant:
    """Marker for an enum variant to be written as a YAML tag."""

    __slots__ = ("name", "payload")

    def __init__(self, name: str, payload: Any) -> None:
        self.name = name
        self.payload = payload


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Safe dumper writing :class:`_Variant` values as tagged nodes."""

    def choose_scalar_style(self) -> str:
        event = self.event
        tag = event.tag or ""
        if event.style is None and tag.startswith("!") and not tag.startswith("!!"):
            # A variant tag: PyYAML would quote every explicitly tagged scalar, but the
            # loader resolves a plain one by its implicit type (``!Axis 0`` is the int 0).
            # Scalars whose plain form would change type were given a quoted style already.
            analysis: Any = getattr(self, "analysis", None)
            if analysis is None:
                analysis = self.analysis = self.analyze_scalar(event.value)
            plain_ok = analysis.allow_flow_plain if self.flow_level else analysis.allow_block_plain
            if plain_ok and not (
                self.simple_key_context and (analysis.empty or analysis.multiline)
            ):
                return ""
        return str(super().choose_scalar_style())


def _represent_variant(dumper: yaml.SafeDumper, variant: _Variant) -> yaml.Node:
    node = dumper.represent_data(variant.payload)
    if (
        isinstance(node, yaml.ScalarNode)
        and node.style is None
        and dumper.resolve(yaml.ScalarNode, node.value, (True, False)) != node.tag
    ):
        node.style = "'"  # e.g. the string "0" or "": plain, it would read back as 0 / None
    node.tag = f"!{variant.name}"
    return node


_Dumper.add_representer(_Variant, _represent_variant)


def decode_config_yaml(data: bytes | str, name: str = "config.yaml") -> dict[str, Any]:
    """Parse a spec-1 ``config.yaml`` into the serde-shaped configuration value.

    Struct fields come back in declaration order (unknown keys after them); an empty file
    gives an empty dict.

    Raises
    ------
    FormatError
        If the text is not YAML or its top level is not a mapping (kind
        ``CONFIG_DESERIALIZATION``).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
        value = yaml.load(text, Loader=_Loader)
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise FormatError(f"cannot parse {name}: {err}", ErrorKind.CONFIG_DESERIALIZATION) from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise FormatError(
            f"cannot parse {name}: the top level is not a mapping with string keys",
            ErrorKind.CONFIG_DESERIALIZATION,
        )
    return normalize_repo_config(value)


def encode_config_yaml(value: dict[str, Any]) -> bytes:
    """Write the serde-shaped configuration as ``config.yaml`` (UTF-8 bytes).

    Enum variants in known enum positions (stores, split and preload conditions, dimension
    conditions) become tags; struct fields are written in declaration order.

    Raises
    ------
    FormatError
        If the value contains something YAML cannot represent.
    """
    tagged = normalize_repo_config(value, wrap_variant=_Variant)
    try:
        text: str = yaml.dump(
            tagged, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
        )
    except yaml.YAMLError as err:
        raise FormatError(f"cannot write config.yaml: {err}", ErrorKind.SERIALIZATION) from None
    return text.encode("utf-8")
