"""DIHYA_RT_WEBHOOKS: JSON or TOML, every field checked."""

from __future__ import annotations

import pytest

from dihya_realtime.kernel.settings import SettingsError, load_settings

SECRET = "whsec-0123456789abcdef"


def test_json_and_toml_text_give_the_same_endpoints():
    as_json = load_settings(webhooks=f'{{"search": {{"url": "https://h.example/w", '
                                     f'"secret": "{SECRET}", "events": ["chat.message_sent"]}}}}')
    as_toml = load_settings(webhooks=f'[search]\nurl = "https://h.example/w"\n'
                                     f'secret = "{SECRET}"\nevents = ["chat.message_sent"]\n')
    for settings in (as_json, as_toml):
        ep = settings.webhooks["search"]
        assert ep.url == "https://h.example/w" and ep.events == ["chat.message_sent"]
        assert ep.secret.get_secret_value() == SECRET
        assert SECRET not in repr(settings)


def test_events_default_to_every_type():
    ep = load_settings(webhooks={"a": {"url": "http://h/x", "secret": SECRET}}).webhooks["a"]
    assert "channel.occupied" in ep.events and "notification.read" in ep.events


@pytest.mark.parametrize("endpoint, words", [
    ({"url": "ftp://h/x", "secret": SECRET}, "http"),
    ({"url": "file:///etc/passwd", "secret": SECRET}, "http"),
    ({"url": "http://h/x", "secret": "short"}, "16 characters"),
    ({"url": "http://h/x", "secret": SECRET, "events": ["chat.nope"]}, "chat.nope"),
    ({"url": "http://h/x", "secret": SECRET, "extra": 1}, "extra"),
])
def test_a_bad_endpoint_stops_start_up_naming_the_problem(endpoint, words):
    with pytest.raises(SettingsError, match=words):
        load_settings(webhooks={"a": endpoint})


def test_neither_json_nor_toml_is_refused():
    with pytest.raises(SettingsError, match="neither JSON nor a TOML"):
        load_settings(webhooks="{not: [json")
