"""Widget keys (:mod:`assistant.serve.keys`): parsing the setting and the file, which key may do
what from where, the per-visitor and per-key limits, and the file read again when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistant.errors import (
    ConfigError,
    NotAuthorisedError,
    RateLimitedError,
    WidgetKeyRefusedError,
)
from assistant.serve.keys import KEY_RATE_FACTOR, KeyFile, WidgetKeys, parse_keys
from assistant.settings import Settings

KEY = "k3y-Intranet-0123456789"
OTHER = "k3y-Partner-9876543210"
INTRANET = "https://intranet.example.org"
PARTNER = "http://127.0.0.1:8080"


def test_a_setting_binds_each_key_to_its_origins() -> None:
    keys = parse_keys(f"{KEY}={INTRANET} {PARTNER}/ ; {OTHER}=HTTP://Partner.Example", "X")
    assert keys == {
        KEY: frozenset({INTRANET, PARTNER}),
        OTHER: frozenset({"http://partner.example"}),
    }
    assert parse_keys("", "X") == {}
    assert parse_keys(" ; ", "X") == {}


def test_a_key_given_twice_has_the_origins_of_both() -> None:
    assert parse_keys(f"{KEY}={INTRANET};{KEY}={PARTNER}", "X") == {
        KEY: frozenset({INTRANET, PARTNER})
    }


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"{KEY} {INTRANET}", "no '='"),
        (f"={INTRANET}", "at least 16"),
        (f"short={INTRANET}", "at least 16"),
        (f"a key with spaces in it={INTRANET}", "no spaces"),
        (f"{KEY}=", "has no origin"),
        (f"{KEY}=intranet.example.org", "is not an origin"),
        (f"{KEY}={INTRANET}/page", "is not an origin"),
        (f"{KEY}=*", "is not an origin"),
    ],
)
def test_a_malformed_entry_says_which_and_why(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_keys(f"{OTHER}={PARTNER};{value}", "ASSISTANT_WIDGET_KEYS")
    message = str(err.value)
    assert message.startswith("ASSISTANT_WIDGET_KEYS, entry 2: ")
    assert why in message
    assert KEY not in message  # the key itself is not repeated into logs


def test_a_malformed_setting_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_WIDGET_KEYS, entry 1: no '='"):
        WidgetKeys.from_settings(Settings(widget_keys="nonsense"))
    with pytest.raises(ConfigError, match="cannot be read"):
        WidgetKeys.from_settings(Settings(widget_keys_file=tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="WIDGET_RATE_PER_MINUTE"):
        Settings.from_env({"ASSISTANT_WIDGET_RATE_PER_MINUTE": "-1"})


def test_the_settings_read_the_widget_variables(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "ASSISTANT_WIDGET_KEYS": f"{KEY}={INTRANET}",
            "ASSISTANT_WIDGET_KEYS_FILE": str(tmp_path / "keys.txt"),
            "ASSISTANT_WIDGET_RATE_PER_MINUTE": "5",
        }
    )
    assert (s.widget_keys, s.widget_keys_file, s.widget_rate_per_minute) == (
        f"{KEY}={INTRANET}",
        tmp_path / "keys.txt",
        5,
    )
    assert KEY not in repr(s)
    assert Settings().widget_rate_per_minute == 20  # on by default


def test_a_key_is_let_through_from_its_origins_only() -> None:
    keys = WidgetKeys(f"{KEY}={INTRANET};{OTHER}={PARTNER}")
    keys.admit(KEY, INTRANET, "10.0.0.1")
    keys.admit(OTHER, PARTNER, "10.0.0.1")
    with pytest.raises(WidgetKeyRefusedError, match=f"pages on {PARTNER}"):
        keys.admit(KEY, PARTNER, "10.0.0.1")
    with pytest.raises(WidgetKeyRefusedError, match="no Origin"):
        keys.admit(KEY, None, "10.0.0.1")
    with pytest.raises(NotAuthorisedError, match="not valid"):
        keys.admit(KEY + "x", INTRANET, "10.0.0.1")
    with pytest.raises(NotAuthorisedError):
        keys.admit("", INTRANET, "10.0.0.1")
    assert keys.allows_origin(PARTNER)
    assert not keys.allows_origin("http://evil.example")


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import assistant.serve.keys as module

    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(module.secrets, "compare_digest", spy)
    keys = WidgetKeys(f"{KEY}={INTRANET};{OTHER}={PARTNER}")
    keys.admit(KEY, INTRANET, "10.0.0.1")
    assert len(compared) == 2  # every key compared, the match does not stop the loop early


def test_each_visitor_and_each_key_have_their_own_limit() -> None:
    now = [0.0]
    keys = WidgetKeys(f"{KEY}={INTRANET};{OTHER}={INTRANET}", per_minute=2, clock=lambda: now[0])
    keys.admit(KEY, INTRANET, "10.0.0.1")
    keys.admit(KEY, INTRANET, "10.0.0.1")
    with pytest.raises(RateLimitedError) as err:
        keys.admit(KEY, INTRANET, "10.0.0.1")
    assert err.value.retry_after == 60
    keys.admit(OTHER, INTRANET, "10.0.0.1")  # same visitor, another key: its own count
    # the key over all its visitors: KEY_RATE_FACTOR times one visitor's limit
    for n in range(2, 2 * KEY_RATE_FACTOR):
        keys.admit(KEY, INTRANET, f"10.0.1.{n}")
    with pytest.raises(RateLimitedError, match="through this widget key") as err:
        keys.admit(KEY, INTRANET, "10.0.2.1")
    assert err.value.status == 429
    now[0] = 61.0
    keys.admit(KEY, INTRANET, "10.0.0.1")  # a minute later


def test_no_limit_with_zero() -> None:
    keys = WidgetKeys(f"{KEY}={INTRANET}", per_minute=0)
    for _ in range(100):
        keys.admit(KEY, INTRANET, "10.0.0.1")


def _touch_later(path: Path, text: str) -> None:
    """Write ``text`` and move the modification time on, as a later edit would."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(old + 2_000_000_000, old + 2_000_000_000))


def test_the_keys_file_is_read_again_when_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"# the intranet\n{KEY}={INTRANET}  # comment\n\n", encoding="utf-8")
    keys = WidgetKeys(f"{OTHER}={PARTNER}", file=path)
    keys.admit(KEY, INTRANET, "v")
    keys.admit(OTHER, PARTNER, "v")  # both sources count

    _touch_later(path, f"{KEY}={INTRANET} {PARTNER}\n")  # a new origin
    keys.admit(KEY, PARTNER, "v")

    _touch_later(path, "# revoked\n")  # revoke: the next request is refused
    with pytest.raises(NotAuthorisedError):
        keys.admit(KEY, INTRANET, "v")

    _touch_later(path, f"{KEY}={INTRANET}\n")  # issued again
    keys.admit(KEY, INTRANET, "v")

    _touch_later(path, f"{KEY}={INTRANET}\nbroken line\n")  # a typo: fail closed, say so
    with pytest.raises(NotAuthorisedError):
        keys.admit(KEY, INTRANET, "v")
    assert "line 2: no '='" in caplog.text

    path.unlink()  # no file: no key of it
    with pytest.raises(NotAuthorisedError):
        keys.admit(KEY, INTRANET, "v")
    keys.admit(OTHER, PARTNER, "v")
    assert keys.active


def test_a_key_file_names_the_line_of_a_mistake(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"{KEY}={INTRANET}\n# fine\n{OTHER}=ftp://x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"keys.txt\), line 3: 'ftp://x' is not an origin"):
        KeyFile(path)


def test_no_keys_configured_is_inactive() -> None:
    assert not WidgetKeys().active
    assert WidgetKeys(f"{KEY}={INTRANET}").active


def test_a_token_from_a_page_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    keys = WidgetKeys()
    keys.warn_token_in_page(INTRANET)
    keys.warn_token_in_page(PARTNER)
    warnings = [r for r in caplog.records if "data-token" in r.getMessage()]
    assert len(warnings) == 1
    assert INTRANET in warnings[0].getMessage()


def test_keys_without_a_token_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    WidgetKeys.from_settings(Settings(widget_keys=f"{KEY}={INTRANET}"))
    assert "ASSISTANT_API_TOKEN is not" in caplog.text
