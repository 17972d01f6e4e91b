from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from worker.core.settings import Settings, mask_url, settings_table


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(CLAIMWIRE_[A-Z0-9_]+)`", readme))
    missing = [var for var, _, _ in settings_table() if var not in documented]
    assert not missing, f"README configuration table lacks {missing}"


def test_every_setting_has_a_description() -> None:
    assert all(meaning for _, _, meaning in settings_table())


def test_plain_postgresql_url_gets_a_driver() -> None:
    s = Settings(database_url="postgresql://u@db:5432/news")
    assert s.effective_database_url == "postgresql+psycopg://u@db:5432/news"
    assert not s.is_sqlite


def test_default_database_is_sqlite_in_data_dir(tmp_path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.effective_database_url == f"sqlite:///{tmp_path.resolve()}/claimwire.db"
    assert s.broker_is_embedded and s.effective_broker_url == "filesystem://"


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMWIRE_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("CLAIMWIRE_ALLOW_PRIVATE_NETWORKS", "true")
    s = Settings()
    assert s.effective_broker_url == "redis://127.0.0.1:6379/3" and not s.broker_is_embedded
    assert s.allow_private_networks is True


def test_private_networks_refused_by_default() -> None:
    assert Settings().allow_private_networks is False


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(poll_jitter=5)
    with pytest.raises(ValidationError):
        Settings(max_attempts="many")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://alice:s3cret@db:5432/news", "postgresql://alice:***@db:5432/news"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url) and ":pw@" not in mask_url(url)
