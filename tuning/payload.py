"""The two untyped mappings the package keeps on purpose, named for what they hold.

Settings are read into typed objects once (``tuning.config.parse``) and travel as those; what
stays a plain mapping is either the config as composed, before that parse, or a record kept as
JSON (a study's or a trial's attributes, its identity, the stored config, best.yaml), whose keys
are written and read by the module that owns the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

RawConfig: TypeAlias = Mapping[str, Any]
"""The composed config as plain containers: parsed by ``tuning.config``, stored as a ``Payload``."""

Payload: TypeAlias = Mapping[str, Any]
"""A JSON-like record kept with a study, a trial or in a file (attributes, identity, best.yaml)."""
