"""Every setting is declared once, in ``settings.SPEC``: the source's and the push's signatures
(which dlt reads to resolve settings), the validation and the source's docstring agree with it."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Iterator, List, Mapping

import dlt
import pytest

from rackwave_source import settings as S
from rackwave_source.options import validated_options
from rackwave_source.push.destination import _resolved
from rackwave_source.source import _rackwave_source

CODE_ONLY = {"progress"}  # an object the caller passes, not a setting


def declared(function: Callable[..., Any]) -> Dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(function).parameters.items()
            if name not in CODE_ONLY}


@pytest.mark.parametrize("function, reads", [
    (_rackwave_source, lambda s: s.source),
    (_resolved, lambda s: s.push),
], ids=["source", "push"])
def test_a_signature_takes_the_spec_settings_in_order_with_their_defaults(
        function: Callable[..., Any], reads: Callable[[S.Setting], bool]) -> None:
    parameters = declared(function)
    assert list(parameters) == [s.name for s in S.SPEC if reads(s)]
    for name, parameter in parameters.items():
        setting = S.SPEC_BY_NAME[name]
        if setting.secret and parameter.default is dlt.secrets.value:
            continue  # required: dlt resolves it as a secret
        assert parameter.default == setting.default, name
        secret_typed = "Secret" in str(parameter.annotation)
        assert secret_typed == setting.secret, f"{name}: secret in SPEC is {setting.secret}"


class Recording(Mapping[str, Any]):
    """The source's settings at their defaults, remembering which were read."""

    def __init__(self) -> None:
        self.values = {s.name: s.default for s in S.SPEC if s.source}
        self.read: List[str] = []

    def __getitem__(self, name: str) -> Any:
        self.read.append(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def test_the_validation_checks_every_setting_of_the_source() -> None:
    values = Recording()
    options = validated_options(values)
    credentials = {"client_id", "client_secret"}  # checked where the client is made
    assert set(values.read) == set(values.values) - credentials
    assert options.per_page == S.DEFAULT_PER_PAGE and options.history == S.DEFAULT_HISTORY


def test_the_source_docstring_explains_every_setting() -> None:
    doc = _rackwave_source.__doc__ or ""
    missing = [s.name for s in S.SPEC if s.source and f"        {s.name}: " not in doc]
    assert not missing


def test_secrets_and_setting_names_come_from_the_spec() -> None:
    assert S.SECRET_SETTINGS == ("client_id", "client_secret", "hash_key")
    assert set(S.SETTINGS) | set(S.PUSH_SETTINGS) == set(S.SPEC_BY_NAME)
    assert all(S.SPEC_BY_NAME[name].accepts == text for name, text in S.SETTINGS.items())
