"""``pacs.json``: the batch job's configuration, validated at the boundary.

Every problem in the file is collected and reported at once (:class:`PacsConfigError`), each naming the key, what is
wrong and what to write instead. Relative paths (``state_dir``, ``bundle``) are resolved against the folder that
holds the config file, so a cron job does not depend on its working directory. A selection of ``rules`` may name the
source ``domain`` of the series it selects (``"domain": "t2w"``), for a model trained on several domains.

Example:
    >>> cfg = load_config("pacs.json")          # doctest: +SKIP
    >>> cfg.pacs, cfg.store_peer, cfg.retrieve  # doctest: +SKIP
    (PeerConfig(host='127.0.0.1', port=4242, ae_title='ORTHANC'), ..., 'move')
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from drdd_med.data.domains import DOMAINS
from drdd_med.io.dicom_rules import Selection, parse_rules

__all__ = ["PeerConfig", "PacsConfig", "PacsConfigError", "load_config", "parse_config"]

_RETRIEVE_MODES = ("move", "get")
_REQUIRED = ("pacs", "rules", "state_dir")


class PacsConfigError(ValueError):
    """``pacs.json`` is invalid; ``problems`` lists every issue found."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = list(problems)
        listing = "\n  - ".join(problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the PACS job config:\n  - {listing}")


@dataclass(frozen=True)
class PeerConfig:
    """A DICOM peer: TCP host and port and its (called) AE title."""

    host: str
    port: int
    ae_title: str

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class PacsConfig:
    """Validated batch-job settings (see ``docs/pacs.md`` for every key).

    ``selection_domains`` maps a selection's name to the source domain its ``rules`` entry names (``"domain"``);
    the series of a selection without one are translated as their headers show.
    """

    pacs: PeerConfig
    selections: tuple[Selection, ...]
    state_dir: Path
    selection_domains: dict[str, str] = field(default_factory=dict)
    ae_title: str = "DRDD"
    bind: str = "127.0.0.1"
    port: int = 11113
    destination: PeerConfig | None = None
    retrieve: str = "move"
    query: dict[str, str] = field(default_factory=lambda: {"Modality": "MR"})
    bundle: Path | None = None
    inference: dict[str, Any] = field(default_factory=dict)
    translator: str | None = None
    max_attempts: int = 3
    max_interruptions: int = 5
    retry_backoff_s: float = 300.0
    max_series_per_run: int = 100
    queue_size: int = 1
    keep_work: bool = False
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 120.0
    network_timeout_s: float = 120.0
    connection_timeout_s: float = 10.0
    retrieve_timeout_s: float = 1800.0
    poll_interval_s: float = 600.0

    @property
    def store_peer(self) -> PeerConfig:
        """Where sCT series are sent: ``destination`` if set, else the source PACS."""
        return self.destination or self.pacs

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.sqlite"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"


#: Optional keys and their defaults (all times in seconds): the defaults of :class:`PacsConfig`.
_DEFAULTS: dict[str, Any] = {
    f.name: f.default_factory() if f.default_factory is not MISSING else f.default
    for f in fields(PacsConfig) if f.name not in ("pacs", "selections", "state_dir", "selection_domains")
}


def _check_ae_title(value: Any, key: str, problems: list[str]) -> None:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 16 or "\\" in value or not value.isascii():
        problems.append(f"{key}: {value!r} is not a valid AE title; use 1-16 ASCII characters without '\\'")


def _check_port(value: Any, key: str, problems: list[str], allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        problems.append(f"{key}: {value!r} is not a TCP port; use an integer in {low}..65535")


def _parse_peer(value: Any, key: str, problems: list[str]) -> PeerConfig | None:
    if not isinstance(value, dict) or set(value) != {"host", "port", "ae_title"}:
        problems.append(f"{key}: must be an object with exactly 'host', 'port' and 'ae_title', got {value!r}")
        return None
    if not isinstance(value["host"], str) or not value["host"]:
        problems.append(f"{key}.host: {value['host']!r} must be a host name or IP address")
    _check_port(value["port"], f"{key}.port", problems)
    _check_ae_title(value["ae_title"], f"{key}.ae_title", problems)
    return PeerConfig(str(value["host"]), value["port"], str(value["ae_title"]).strip())


def _check_query(query: Any, problems: list[str]) -> None:
    from pydicom.datadict import tag_for_keyword

    if not isinstance(query, dict):
        problems.append(f"query: must be an object of DICOM keyword -> match value, got {query!r}")
        return
    for key, value in query.items():
        if tag_for_keyword(key) is None or key == "QueryRetrieveLevel":
            problems.append(f"query.{key}: not a DICOM keyword usable as a C-FIND key (e.g. 'StudyDate')")
        if not isinstance(value, str):
            problems.append(f"query.{key}: {value!r} must be a string (C-FIND matching, e.g. '20260101-')")


def _selection_domains(rules: Any, problems: list[str]) -> dict[str, str]:
    """Selection name -> the source ``domain`` its entry of ``rules`` names (entries without one are left out)."""
    items = rules.get("selections") if isinstance(rules, dict) else None
    domains: dict[str, str] = {}
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or "domain" not in item:
            continue
        name, domain = str(item.get("name", f"selection{i}")), item["domain"]
        if domain not in DOMAINS:
            problems.append(f"rules.selections[{i}] ({name}).domain: {domain!r} is not a source domain; use one of "
                            f"{', '.join(DOMAINS)}, or leave it out to read the domain from the headers")
        elif domains.setdefault(name, domain) != domain:
            problems.append(f"rules.selections[{i}] ({name}).domain: another selection named {name!r} names domain "
                            f"{domains[name]!r}; give the selections distinct names")
    return domains


def _number(value: Any, key: str, problems: list[str], minimum: float, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = "an integer" if integer else "a number"
        problems.append(f"{key}: {value!r} must be {kind} >= {minimum}")


def parse_config(raw: dict[str, Any], base_dir: Path | str = ".", source: str = "pacs config") -> PacsConfig:
    """Validate a decoded ``pacs.json`` object and build a :class:`PacsConfig`.

    Args:
        raw: the decoded JSON object.
        base_dir: folder that relative paths are resolved against (the config file's folder).
        source: name used in error messages (the file path).

    Raises:
        PacsConfigError: listing every problem found.
    """
    if not isinstance(raw, dict):
        raise PacsConfigError(source, [f"top level must be a JSON object, got {type(raw).__name__}"])
    problems: list[str] = []
    unknown = sorted(set(raw) - set(_DEFAULTS) - set(_REQUIRED))
    if unknown:
        problems.append(f"unknown key(s) {unknown}; allowed: {sorted(set(_DEFAULTS) | set(_REQUIRED))}")
    problems += [f"{key}: missing (required)" for key in _REQUIRED if key not in raw]
    values = {**_DEFAULTS, **{k: v for k, v in raw.items() if k in _DEFAULTS or k in _REQUIRED}}

    _check_ae_title(values["ae_title"], "ae_title", problems)
    if not isinstance(values["bind"], str):
        problems.append(f"bind: {values['bind']!r} must be an IP address to listen on, e.g. '0.0.0.0'")
    if values["retrieve"] not in _RETRIEVE_MODES:
        problems.append(f"retrieve: {values['retrieve']!r} must be one of {_RETRIEVE_MODES}")
    _check_port(values["port"], "port", problems, allow_zero=values["retrieve"] == "get")
    pacs = _parse_peer(values.get("pacs"), "pacs", problems) if "pacs" in raw else None
    destination = None
    if values["destination"] is not None:
        destination = _parse_peer(values["destination"], "destination", problems)
    _check_query(values["query"], problems)
    selections: tuple[Selection, ...] = ()
    selection_domains: dict[str, str] = {}
    if "rules" in raw:
        try:
            selections = tuple(parse_rules(raw["rules"]))
        except ValueError as err:
            problems.append(f"rules: {err}")
        selection_domains = _selection_domains(raw["rules"], problems)
    if values["bundle"] is not None and not isinstance(values["bundle"], str):
        problems.append(f"bundle: {values['bundle']!r} must be a path string or null")
    translator = values["translator"]
    if translator is not None and (not isinstance(translator, str) or translator.count(":") != 1):
        problems.append(f"translator: {translator!r} must be null (the bundle translator) or 'package.module:factory'")
    if not isinstance(values["inference"], dict):
        problems.append(f"inference: {values['inference']!r} must be an object")
    if "state_dir" in raw and (not isinstance(raw["state_dir"], str) or not raw["state_dir"]):
        problems.append(f"state_dir: {raw['state_dir']!r} must be a directory path")
    for key in ("max_attempts", "max_interruptions", "max_series_per_run", "queue_size"):
        _number(values[key], key, problems, 1, integer=True)
    for key in ("retry_backoff_s", "acse_timeout_s", "dimse_timeout_s", "network_timeout_s",
                "connection_timeout_s", "retrieve_timeout_s", "poll_interval_s"):
        _number(values[key], key, problems, 0 if key == "retry_backoff_s" else 0.1)
    if not isinstance(values["keep_work"], bool):
        problems.append(f"keep_work: {values['keep_work']!r} must be true or false")
    if problems:
        raise PacsConfigError(source, problems)

    base = Path(base_dir)
    simple = {k: values[k] for k in _DEFAULTS if k not in ("destination", "bundle")}
    return PacsConfig(
        pacs=pacs, selections=selections, state_dir=(base / values["state_dir"]).absolute(),
        selection_domains=selection_domains,
        destination=destination, bundle=None if values["bundle"] is None else (base / values["bundle"]).absolute(),
        **{**simple, "ae_title": values["ae_title"].strip(), "query": dict(values["query"]),
           "inference": dict(values["inference"])},
    )


def load_config(path: Path | str) -> PacsConfig:
    """Read and validate ``pacs.json``; relative paths in it are relative to its folder.

    Raises:
        PacsConfigError: the file is missing, not JSON, or invalid (every problem listed).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PacsConfigError(str(path), ["file not found; pass --config with the path of pacs.json"]) from None
    except json.JSONDecodeError as err:
        raise PacsConfigError(str(path), [f"not valid JSON: {err}"]) from None
    return parse_config(raw, base_dir=path.parent, source=str(path))
