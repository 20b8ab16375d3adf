"""Settings from files: ``DVT_CDS_<NAME>_FILE`` names a file whose content is the value (secrets mounted as files,
the PostgreSQL image's convention), for every setting; a file that cannot be used stops the start in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.settings import Settings, SettingsFileError, unknown_variables
from tests.processes import clean_env, run


def test_every_setting_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = tmp_path / "database-url"
    url.write_text("postgresql+psycopg://cds:s3cret@db.internal:5432/cds\n")  # an editor's newline is not the value
    issuers = tmp_path / "issuers.json"
    issuers.write_text('[{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks"}]')
    key = tmp_path / "session-key"
    key.write_text("k" * 40 + "\r\n")
    port = tmp_path / "port"
    port.write_text("9000")
    for name, path in (("DATABASE_URL", url), ("TRUSTED_ISSUERS", issuers), ("SMART_SESSION_KEY", key), ("PORT", port)):
        monkeypatch.setenv(f"DVT_CDS_{name}_FILE", str(path))
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://cds:s3cret@db.internal:5432/cds"
    assert [i.iss for i in settings.trusted_issuers] == ["https://ehr.example.org"]
    assert settings.smart_session_key is not None
    assert settings.smart_session_key.get_secret_value() == "k" * 40
    assert settings.port == 9000


def test_only_trailing_line_breaks_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "key"
    path.write_text(" spaces are part of it " + "x" * 32 + "\n\n")
    monkeypatch.setenv("DVT_CDS_SMART_SESSION_KEY_FILE", str(path))
    key = Settings().smart_session_key
    assert key is not None
    assert key.get_secret_value() == " spaces are part of it " + "x" * 32


def test_a_value_and_its_file_together_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "url"
    path.write_text("sqlite:///x.sqlite3")
    monkeypatch.setenv("DVT_CDS_DATABASE_URL", "sqlite:///y.sqlite3")
    monkeypatch.setenv("DVT_CDS_DATABASE_URL_FILE", str(path))
    with pytest.raises(SettingsFileError, match="DVT_CDS_DATABASE_URL is set too"):
        Settings()


def test_drain_file_is_a_setting_and_has_a_file_variant_of_its_own() -> None:
    assert unknown_variables({"DVT_CDS_DRAIN_FILE": "/x", "DVT_CDS_DRAIN_FILE_FILE": "/y"}) == []
    assert unknown_variables({"DVT_CDS_DATABASE_URL_FILE": "/x", "DVT_CDS_PORTT_FILE": "/y"}) == ["DVT_CDS_PORTT_FILE"]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "missing", "cannot read"),
        (lambda tmp: tmp, "cannot read"),  # a directory
    ],
)
def test_an_unusable_file_stops_the_command_in_one_line(tmp_path: Path, make, problem: str) -> None:
    path = make(tmp_path)
    env = clean_env(tmp_path, DVT_CDS_SMART_SESSION_KEY_FILE=str(path))
    result = run(["serve", "--production"], env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"dvt-cds: invalid setting DVT_CDS_SMART_SESSION_KEY_FILE: {problem} {path}")
    assert "Traceback" not in result.stderr


def test_a_file_value_is_validated_like_the_variable_and_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "proxy"
    path.write_text("socks5://user:hunter2@proxy.internal:1080")
    result = run(["serve"], clean_env(tmp_path, DVT_CDS_HTTPS_PROXY_FILE=str(path)))
    assert result.returncode == 2
    assert result.stderr.startswith("dvt-cds: invalid setting DVT_CDS_HTTPS_PROXY: ")
    assert "hunter2" not in result.stderr
