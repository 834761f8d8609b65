"""Start-up checks of the adaptations ``httpguard`` / ``packetguard`` make to gevent's pywsgi
and engine.io, the log-line escaping, and the HTTP body setting's floor."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from dihya_realtime.kernel.settings import SettingsError, load_settings
from dihya_realtime.transport.http import HideSessionIds, check_pywsgi, safe_text
from dihya_realtime.transport.packets import refuse_malformed_packets


def test_check_pywsgi_passes_on_the_installed_gevent() -> None:
    check_pywsgi()


def test_check_pywsgi_names_the_adaptation_when_an_internal_is_missing(monkeypatch) -> None:
    from gevent import pywsgi

    monkeypatch.delattr(pywsgi.WSGIHandler, "format_request")
    with pytest.raises(RuntimeError, match=r"transport\.http .*format_request"):
        check_pywsgi()


def test_packet_guard_fails_loudly_without_engineio_message_handler() -> None:
    server = SimpleNamespace(eio=SimpleNamespace(handlers={}))
    with pytest.raises(RuntimeError, match=r"transport\.packets"):
        refuse_malformed_packets(server)


def test_safe_text_escapes_control_bytes_quotes_and_cuts() -> None:
    assert safe_text('/a\x1b[31m"b\\\x00é') == '/a\\x1b[31m\\x22b\\x5c\\x00\\xe9'
    assert len(safe_text("x" * 1000, 50)) == 50


def test_session_ids_are_hidden_in_engineio_log_lines() -> None:
    record = logging.LogRecord("engineio.server", logging.ERROR, __file__, 1,
                               "Invalid session %s", ("Ab3_-xYz0123456789AB",), None)
    HideSessionIds().filter(record)
    assert record.getMessage() == "Invalid session <sid>"


def test_http_body_limit_holds_at_least_one_payload() -> None:
    with pytest.raises(SettingsError, match="max_http_body_bytes"):
        load_settings(max_payload_bytes=200_000, max_http_body_bytes=100_000)
    assert load_settings().max_http_body_bytes == 1024 * 1024
    assert load_settings().http_header_timeout == 10
