"""Every package under ``features/`` is a Feature, and has tables exactly when it has a
migration branch of its own."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from types import ModuleType

import pytest
from alembic.script import ScriptDirectory

import dihya_realtime.features
import dihya_realtime.store
from dihya_realtime.features import Feature, feature_module, feature_names

FEATURES = Path(dihya_realtime.features.__file__).parent
MIGRATIONS = Path(dihya_realtime.store.__file__).parent / "migrations"


def branch_labels() -> set[str]:
    script = ScriptDirectory(str(MIGRATIONS))
    return {label for rev in script.walk_revisions() for label in rev.branch_labels or ()}


def test_every_package_under_features_is_a_feature():
    packages = {path.parent.name for path in FEATURES.glob("*/__init__.py")}
    assert set(feature_names()) == packages


@pytest.mark.parametrize("name", feature_names())
def test_a_features_events_module_has_a_setup_taking_the_realtime(name):
    module = feature_module(name)
    assert module.__name__ == f"dihya_realtime.features.{name}.events"
    assert isinstance(module, Feature)
    assert callable(module.setup)
    assert list(inspect.signature(module.setup).parameters) == ["rt"]


@pytest.mark.parametrize("name", feature_names())
def test_a_feature_has_models_exactly_when_it_has_a_migration_branch(name):
    has_models = (FEATURES / name / "models.py").exists()
    assert has_models == (name in branch_labels()), (
        f"{name}: models.py {'without' if has_models else 'beside'} a migration branch "
        f"labelled {name!r}")


def test_every_migration_branch_but_the_foundation_names_a_feature():
    # the outbox is no feature: transactional publish works whatever DIHYA_RT_FEATURES says
    assert branch_labels() - {"foundation", "outbox"} <= set(feature_names())
    assert {"chat", "collab", "notifications"} <= branch_labels()  # the reader found them


def test_an_events_module_without_setup_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "dihya_realtime.features.nosetup.events",
                        ModuleType("dihya_realtime.features.nosetup.events"))
    with pytest.raises(TypeError, match="no setup"):
        feature_module("nosetup")
